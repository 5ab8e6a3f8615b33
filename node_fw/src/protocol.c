/* Cut-through forwarding with a 2-byte lag (docs/protocol.md section 4).
 *
 * Every received byte is (possibly) rewritten and pushed into a 2-byte hold; the oldest held byte is
 * transmitted when a third arrives. Only STATUS and the CRC depend on the CRC check at the frame's end:
 * when the CRC's last byte arrives, STATUS and the CRC's first byte are still held, so STATUS can be
 * decided before it is sent and the node never has to buffer a frame.
 * The tools/packmon/sim/node_model.py reference model is this same machine, line for line. */
#include "protocol.h"
#include "crc16.h"
#include "board.h"

static struct {
    uint8_t in_frame;
    uint8_t cmd, addr, cnt;
    uint8_t mine;        /* an addressed command for this node */
    uint8_t framing;     /* a byte arrived with a low stop bit (or was lost) */
    uint8_t new_addr;    /* ENUMERATE: the address to take if the frame is good */
    int8_t claimed;      /* SCAN: index of the slot this node filled, -1 none */
    uint16_t pos;        /* index of the next byte in the frame */
    uint16_t end;        /* index of NODES */
    uint16_t crc_in, crc_out;
    uint8_t sent_any;    /* SOF (not CRC-covered) has been transmitted */
    uint8_t hold[PROTO_LAG + 1];
    uint8_t held;
    uint8_t rec[SLOT_SIZE]; /* the record this node writes into the frame */
    uint8_t wlen;
} p;

void proto_reset(void)
{
    p.in_frame = 0;
    p.held = 0;
}

uint8_t proto_in_frame(void)
{
    return p.in_frame;
}

static void send(uint8_t b)
{
    if (p.sent_any) {
        p.crc_out = crc16_update(p.crc_out, b);
    }
    p.sent_any = 1;
    if (!proto_emit(b)) {
        p.framing = 1; /* a lost byte breaks the frame downstream; make it a fault here too */
    }
}

static void push(uint8_t b)
{
    p.hold[p.held++] = b;
    if (p.held > PROTO_LAG) {
        send(p.hold[0]);
        for (uint8_t i = 0; i < PROTO_LAG; i++) {
            p.hold[i] = p.hold[i + 1];
        }
        p.held = PROTO_LAG;
    }
}

static void error(node_t *n)
{
    n->bad++;
    n->flags |= FLAG_RX_ERROR;
    n->frame_end = 2;
}

void proto_timeout(node_t *n)
{
    if (p.in_frame) {
        error(n);
        proto_reset();
    }
}

static void make_record(const node_t *n, uint8_t index)
{
    p.rec[0] = (uint8_t)(index + 1);
    p.rec[1] = n->flags;
    p.rec[2] = (uint8_t)n->mv;
    p.rec[3] = (uint8_t)(n->mv >> 8);
    p.rec[4] = (uint8_t)n->temp;
    p.rec[5] = (uint8_t)((uint16_t)n->temp >> 8);
    p.rec[6] = n->bad;
    p.rec[7] = n->scans;
}

static void make_info(const node_t *n)
{
    p.rec[0] = FW_MAJOR;
    p.rec[1] = FW_MINOR;
    p.rec[2] = n->reset_cause;
    p.rec[3] = n->bad;
    p.rec[4] = (uint8_t)n->uptime;
    p.rec[5] = (uint8_t)(n->uptime >> 8);
    p.rec[6] = (uint8_t)(n->uptime >> 16);
    p.rec[7] = (uint8_t)(n->uptime >> 24);
}

static void make_clock(const node_t *n)
{
    const trim_t *t = &n->trim;
    p.rec[0] = t->osccal;
    p.rec[1] = t->osccal0;
    p.rec[2] = t->state;
    p.rec[3] = (uint8_t)t->err01;
    p.rec[4] = t->clean;
    p.rec[5] = t->steps;
    p.rec[6] = t->ee_writes;
    p.rec[7] = t->ee_value;
}

static void finish(node_t *n)
{
    uint8_t status = p.hold[0]; /* the received CRC (hold[1] and the last byte) is replaced */
    uint8_t done = 0;
    uint8_t good = p.crc_in == 0 && !p.framing;
    p.held = 0;
    if (!good) {
        error(n);
        if ((status & 0x7F) == 0) {
            status |= n->address ? n->address : FAULT_NO_ADDRESS;
        }
    } else if (p.cmd == CMD_ENUMERATE) {
        n->address = p.new_addr;
    } else if (p.cmd == CMD_SCAN) {
        if (p.claimed >= 0) {
            n->address = (uint8_t)(p.claimed + 1);
            n->flags &= (uint8_t)~LATCHED_FLAGS;
            n->scans++;
        }
    } else if (p.mine) {
        if ((p.cmd == CMD_INFO || p.cmd == CMD_READ || p.cmd == CMD_CLOCK) && p.cnt >= 1) {
            done = 1;
        } else if (p.cmd == CMD_IDENTIFY) {
            n->identify = 1;
            done = 1;
        } else if (p.cmd == CMD_WRITE && p.wlen == SLOT_SIZE) {
            settings_t s;
            settings_unpack(p.rec, &s);
            if (settings_valid(&s)) {
                n->settings = s;
                n->settings_written = 1;
                if (s.flags & SETTINGS_CALIBRATED) {
                    n->flags &= (uint8_t)~FLAG_NOT_CALIBRATED;
                } else {
                    n->flags |= FLAG_NOT_CALIBRATED;
                }
                done = 1;
            }
        }
    }
    if (good) {
        n->frame_end = 1;
    }
    if (done) {
        status |= STATUS_DONE;
    }
    send(status);
    uint16_t crc = p.crc_out;
    send((uint8_t)(crc >> 8));
    send((uint8_t)crc);
    p.in_frame = 0;
}

void proto_rx(node_t *n, uint8_t b, uint8_t framing_error)
{
    if (!p.in_frame) {
        if (b != PROTO_SOF) {
            return; /* noise between frames: discarded, not counted */
        }
        p.in_frame = 1;
        p.pos = 1;
        p.crc_in = CRC16_INIT;
        p.crc_out = CRC16_INIT;
        p.sent_any = 0;
        p.held = 0;
        p.framing = 0;
        p.claimed = -1;
        p.mine = 0;
        p.wlen = 0;
        p.cmd = 0;
        push(b);
        return;
    }

    uint16_t pos = p.pos++;
    p.crc_in = crc16_update(p.crc_in, b);
    p.framing |= framing_error;

    if (pos == 1) {
        p.cmd = b;
    } else if (pos == 2) {
        /* SEQ: forwarded unchanged */
    } else if (pos == 3) {
        p.addr = b;
        if (p.cmd == CMD_ENUMERATE) {
            b = (b == 255) ? 255 : (uint8_t)(b + 1);
            p.new_addr = (b <= MAX_SLOTS) ? b : 0;
        }
    } else if (pos == 4) {
        p.cnt = b;
        if (b > MAX_SLOTS) {
            /* A bad header: the length cannot be trusted, so stop forwarding (section 4). */
            error(n);
            proto_reset();
            return;
        }
        p.end = (uint16_t)(5u + SLOT_SIZE * b);
        p.mine = (n->address != 0 && p.addr == n->address);
        if (p.mine && p.cmd == CMD_INFO) {
            make_info(n);
        } else if (p.mine && p.cmd == CMD_READ) {
            settings_pack(&n->settings, p.rec);
        } else if (p.mine && p.cmd == CMD_CLOCK) {
            make_clock(n);
        }
    } else if (pos < p.end) {
        uint8_t offset = (uint8_t)((pos - 5u) % SLOT_SIZE);
        uint8_t index = (uint8_t)((pos - 5u) / SLOT_SIZE);
        if (p.cmd == CMD_SCAN) {
            if (offset == 0 && p.claimed < 0 && b == 0) {
                p.claimed = (int8_t)index;
                make_record(n, index);
            }
            if ((int8_t)index == p.claimed) {
                b = p.rec[offset];
            }
        } else if (p.mine && index == 0) {
            if (p.cmd == CMD_INFO || p.cmd == CMD_READ || p.cmd == CMD_CLOCK) {
                b = p.rec[offset];
            } else if (p.cmd == CMD_WRITE) {
                p.rec[p.wlen++] = b;
            }
        }
    } else if (pos == p.end) {
        b = (b == 255) ? 255 : (uint8_t)(b + 1); /* NODES */
    } else if (pos == p.end + 3u) {
        finish(n); /* the CRC's low byte: the frame is complete (held: STATUS, CRC high) */
        return;
    }
    push(b);
}
