/* Cut-through forwarding without lag (protocol 1.2, docs/protocol.md section 4).
 *
 * Every received byte is (possibly) rewritten and transmitted at once: a hop costs the byte being received
 * and a fraction of a bit. So nothing can wait for the CRC check at the frame's end: the CRC that leaves is
 * the received one plus the difference between the CRCs of what came in and of what went out, so a
 * corruption upstream stays in it all the way to the hub, and a node that found the frame bad names itself
 * in the FAULT field of the next frame (section 4).
 * The tools/packmon/sim/node_model.py reference model is this same machine, line for line.
 *
 * Flash is the tight budget (6012 B): records are copied from structs whose layout is the wire's
 * (checked below), and the frame position is kept in byte-sized counters (header, slot, tail). */
#include <stddef.h>
#include <string.h>

#include "protocol.h"
#include "crc16.h"
#include "board.h"

/* The copies below rely on little-endian structs without padding laid out as the records (the AVR and
 * the hosts the tests run on are little-endian). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "records are copied from little-endian structs");
_Static_assert(offsetof(node_t, scans) - offsetof(node_t, flags) == SLOT_SIZE - 2, "SCAN record layout");
_Static_assert(offsetof(node_t, snap_seq) - offsetof(node_t, snap_flags) == SLOT_SIZE - 2, "SNAPREAD layout");
_Static_assert(offsetof(trim_t, ee_value) == SLOT_SIZE - 1, "CLOCK record layout");
_Static_assert(sizeof(settings_t) == SLOT_SIZE && offsetof(settings_t, reserved) == 6, "SETTINGS layout");

enum { H_CMD = 1, H_SEQ, H_ADDR, H_CNT, H_END }; /* header positions; H_END: in the slots or the tail */

static struct {
    uint8_t in_frame;
    uint8_t hdr[H_END];  /* the header as received: [H_CMD], [H_SEQ], [H_ADDR], [H_CNT] */
    uint8_t pos;         /* next header position, H_END once the header is complete */
    uint8_t index;       /* slot of the next payload byte (== CNT: the tail) */
    uint8_t offset;      /* byte within that slot */
    uint8_t tail;        /* bytes of the tail (NODES STATUS CRC CRC) received */
    uint8_t nodes_in;    /* NODES as received: how many nodes the frame passed before this one */
    uint8_t mine;        /* an addressed command for this node */
    uint8_t framing;     /* a byte arrived with a low stop bit (or was lost) */
    uint8_t new_addr;    /* ENUMERATE: the address to take if the frame is good */
    int8_t claimed;      /* SCAN, SNAPREAD: index of the slot this node fills, -1 none */
    uint16_t crc_in, crc_out;
    uint16_t delta;      /* CRC of what came in ^ CRC of what went out, over SOF+1 .. STATUS */
    uint8_t done;        /* DONE was set: execute the command if the CRC proves good */
    uint8_t sent_any;    /* SOF (not CRC-covered) has been transmitted */
    uint8_t rec[SLOT_SIZE]; /* the record this node writes into the frame, or WRITE's / SNAP's slot */
    uint8_t wlen;
    uint8_t carry;       /* SNAP's ELAPSED: the carry into its next byte */
} p;

/* will_do() reads WRITE's slot in place as a settings_t: aligned for it on any host (the host tests run
 * UBSan; the AVR does not care) */
_Static_assert(offsetof(__typeof__(p), rec) % _Alignof(settings_t) == 0, "p.rec aligned for settings_t");

#define CMD (p.hdr[H_CMD])
#define CNT (p.hdr[H_CNT])

void proto_reset(void)
{
    p.in_frame = 0;
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

static void error(node_t *n)
{
    n->bad++;
    n->flags |= FLAG_RX_ERROR;
    n->frame_end = 2;
    /* reported in the next frame's FAULT (section 4) */
    n->fault = n->address ? n->address : FAULT_NO_ADDRESS;
}

void proto_timeout(node_t *n)
{
    if (p.in_frame) {
        error(n);
        proto_reset();
    }
}

/* SCAN record (section 3.1) from flags..scans, SNAPREAD record (3.5) from snap_flags..snap_seq */
static void make_record(uint8_t index, const uint8_t *fields)
{
    p.rec[0] = (uint8_t)(index + 1);
    memcpy(&p.rec[1], fields, SLOT_SIZE - 1); /* inline: at CNT (SNAPREAD) it is on every hop's way (docs/protocol.md 5) */
}

/* STATUS is passing: whether this node will execute the command (DONE), decided before the CRC is in;
 * it executes only if the CRC then proves good (finish) */
static uint8_t will_do(void)
{
    if (CMD == CMD_SNAP) {
        return CNT == SNAP_CNT; /* the length this node times it by (section 3.5) */
    }
    if (!p.mine) {
        return 0;
    }
    if (CMD == CMD_INFO || CMD == CMD_READ || CMD == CMD_CLOCK) {
        return CNT >= 1;
    }
    if (CMD == CMD_WRITE) {
        return p.wlen == SLOT_SIZE && settings_valid((const settings_t *)p.rec);
    }
    return CMD == CMD_IDENTIFY;
}

static void finish(node_t *n, uint8_t good)
{
    p.in_frame = 0;
    if (!good) {
        error(n);
        return;
    }
    n->frame_end = 1;
    if (CMD == CMD_ENUMERATE) {
        n->address = p.new_addr;
    } else if (CMD == CMD_SCAN) {
        if (p.claimed >= 0) {
            n->address = (uint8_t)(p.claimed + 1);
            n->flags &= (uint8_t)~LATCHED_FLAGS;
            n->scans++;
        }
    } else if (p.done) {
        if (CMD == CMD_SNAP) {
            /* wait = DELAY - ELAPSED / 256 ticks: ELAPSED is the hops the frame took before it ended here,
             * so every node samples DELAY after it ended at node 1 (section 3.5); main.c scales the wait to
             * the node's clock */
            uint16_t delay = (uint16_t)(p.rec[0] | (uint16_t)p.rec[1] << 8);
            uint16_t elapsed = (uint16_t)(p.rec[6] | (uint16_t)p.rec[7] << 8); /* ELAPSED as received, in ticks */
            n->snap_wait = delay > elapsed ? (uint16_t)(delay - elapsed) : 0;
            n->snap_seq = p.hdr[H_SEQ];
            n->snap = SNAP_REQUESTED;
        } else if (CMD == CMD_IDENTIFY) {
            n->identify = 1;
        } else if (CMD == CMD_WRITE) {
            bytes_copy(&n->settings, p.rec, SLOT_SIZE);
            n->settings_written = 1;
            if (n->settings.flags & SETTINGS_CALIBRATED) {
                n->flags &= (uint8_t)~FLAG_NOT_CALIBRATED;
            } else {
                n->flags |= FLAG_NOT_CALIBRATED;
            }
        }
    }
}

/* The record an addressed INFO/READ/CLOCK, or a SNAPREAD, puts in the frame: prepared once CNT is known */
static void prepare(node_t *n)
{
    if (p.mine) {
        if (CMD == CMD_INFO) {
            p.rec[0] = FW_MAJOR;
            p.rec[1] = FW_MINOR;
            p.rec[2] = n->reset_cause;
            p.rec[3] = n->bad;
            bytes_copy(&p.rec[4], &n->uptime, 4);
        } else if (CMD == CMD_READ) {
            bytes_copy(p.rec, &n->settings, SLOT_SIZE);
        } else if (CMD == CMD_CLOCK) {
            bytes_copy(p.rec, &n->trim, SLOT_SIZE);
        }
    }
    if (CMD == CMD_SNAPREAD && n->snap == SNAP_READY && n->address) {
        /* the slot is the node's address: a node without a snapshot (old firmware, reset, the SNAP lost,
         * the sample not taken yet) leaves its slot empty, and the hub sees which */
        p.claimed = (int8_t)(n->address - 1);
        make_record((uint8_t)p.claimed, &n->snap_flags);
    }
}

void proto_rx(node_t *n, uint8_t b, uint8_t framing_error)
{
    if (!p.in_frame) {
        if (b != PROTO_SOF) {
            return; /* noise between frames: discarded, not counted */
        }
        p.in_frame = 1;
        p.pos = H_CMD;
        p.index = 0;
        p.offset = 0;
        p.tail = 0;
        p.crc_in = CRC16_INIT;
        p.crc_out = CRC16_INIT;
        p.sent_any = 0;
        p.framing = 0;
        p.claimed = -1;
        p.mine = 0;
        p.wlen = 0;
        CMD = 0;
        send(b);
        return;
    }

    p.crc_in = crc16_update(p.crc_in, b);
    p.framing |= framing_error;

    uint8_t pos = p.pos;
    if (pos < H_END) {
        p.hdr[pos] = b;
        p.pos = (uint8_t)(pos + 1);
        if (pos == H_ADDR && CMD == CMD_ENUMERATE) {
            b = (b == 255) ? 255 : (uint8_t)(b + 1);
            p.new_addr = (b <= MAX_SLOTS) ? b : 0;
        } else if (pos == H_CNT) {
            if (b > MAX_SLOTS) {
                /* A bad header: the length cannot be trusted, so stop forwarding (section 4). */
                error(n);
                proto_reset();
                return;
            }
            p.mine = (n->address != 0 && p.hdr[H_ADDR] == n->address);
            prepare(n);
        }
    } else if (p.index < CNT) {
        uint8_t offset = p.offset, index = p.index;
        if (++p.offset == SLOT_SIZE) {
            p.offset = 0;
            p.index++;
        }
        if (CMD == CMD_SCAN && offset == 0 && p.claimed < 0 && b == 0) {
            p.claimed = (int8_t)index;
            make_record(index, &n->flags);
        }
        if ((int8_t)index == p.claimed) {
            b = p.rec[offset];
        } else if (index == 0 && (p.mine || CMD == CMD_SNAP)) {
            if (CMD == CMD_INFO || CMD == CMD_READ || CMD == CMD_CLOCK) {
                b = p.rec[offset];
            } else if (CMD == CMD_WRITE || CMD == CMD_SNAP) {
                p.rec[p.wlen++] = b; /* WRITE's settings, SNAP's timing: kept as received */
                if (CMD == CMD_SNAP && offset >= 5) {
                    /* ELAPSED (u24, offsets 5-7): this node adds its hop, HOP plus its own deviation, low byte
                     * first: the carry goes on to the next byte, which comes next */
                    uint16_t a = (uint16_t)((p.rec[2] | (uint16_t)p.rec[3] << 8) + (uint16_t)n->snap_dev);
                    uint16_t t = (uint16_t)(b + (offset == 5 ? (uint8_t)a : p.carry + (offset == 6 ? (uint8_t)(a >> 8) : 0)));
                    b = (uint8_t)t;
                    p.carry = (uint8_t)(t >> 8);
                }
            }
        }
    } else {
        uint8_t t = p.tail++;
        if (t == 0) {
            p.nodes_in = b;
            b = (b == 255) ? 255 : (uint8_t)(b + 1); /* NODES */
        } else if (t == 1) {
            /* STATUS. FAULT: the first node that found the frame before this one bad names itself; a node
             * further down drops its own report, as the fault upstream explains it */
            if (!(b & 0x7F)) {
                b |= n->fault;
            }
            n->fault = 0;
            p.done = will_do();
            if (p.done) {
                b |= STATUS_DONE;
            }
            send(b);
            p.delta = p.crc_in ^ p.crc_out;
            return;
        } else {
            /* the CRC: what came in, corrected by what this node changed (delta), so that an error
             * upstream stays in it; the CRC register over a good frame ends at 0 */
            b ^= (uint8_t)(t == 2 ? p.delta >> 8 : p.delta);
            if (t == 3) {
                uint8_t good = p.crc_in == 0 && !p.framing;
                if (!good && p.crc_in == 0) {
                    b ^= 0xFF; /* a framing error in a frame whose bytes check: make the hub see it too */
                }
                send(b);
                finish(n, good);
                return;
            }
        }
    }
    send(b);
}
