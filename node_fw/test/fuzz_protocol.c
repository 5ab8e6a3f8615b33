/* libFuzzer target for the node's frame handling (protocol.c + crc16.c + settings.c).
 *
 * Input: 2 bytes of node state (the first: address, and whether the node holds a finished snapshot for
 * SNAPREAD to report), then a byte stream; a byte 0xFE followed by k makes the next k-th byte
 * arrive with a framing error, and 0xFD k ends the line with a timeout. After the stream the line goes
 * silent, and a good ENUMERATE must then be forwarded correctly, carrying the node's report of a bad frame
 * (if any) in FAULT once: no input may leave the node in a state where it stops forwarding valid frames.
 * ASan/UBSan catch out-of-bounds and undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc16.h"
#include "protocol.h"
#include "settings.h"

static uint8_t out[8192];
static size_t n_out;

uint8_t proto_emit(uint8_t b)
{
    if (n_out >= sizeof out) {
        return 0;
    }
    out[n_out++] = b;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    node_t n;
    memset(&n, 0, sizeof n);
    settings_defaults(&n.settings);
    n.address = data[0] % 70;
    n.flags = data[1];
    n.mv = 3300;
    n.temp = 250;
    if (data[0] >= 70) { /* a snapshot to report (protocol.md 3.5): SNAPREAD writes it into its slot */
        n.snap = SNAP_READY;
        n.snap_flags = data[1];
        n.snap_mv = 3290;
        n.snap_temp = 245;
        n.snap_seq = data[0];
    }
    proto_reset();
    n_out = 0;
    size_t fe_at = (size_t)-1;
    size_t in = 0;
    for (size_t i = 2; i < size; i++) {
        if (data[i] == 0xFE && i + 1 < size) {
            fe_at = in + data[++i];
            continue;
        }
        if (data[i] == 0xFD && i + 1 < size) {
            i++;
            proto_timeout(&n);
            continue;
        }
        proto_rx(&n, data[i], in == fe_at);
        in++;
    }
    /* no lag (protocol 1.2): a node emits at most one byte for each it received */
    if (n_out > in) {
        abort();
    }
    proto_timeout(&n);
    if (proto_in_frame()) {
        abort();
    }
    uint8_t pending = n.fault; /* a bad frame above: reported in the next frame's FAULT */
    if (pending != 0 && pending != (n.address ? n.address : 127)) {
        abort();
    }
    static const uint8_t enumerate[] = {0xA5, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0xE1, 0xE1};
    n_out = 0;
    for (size_t i = 0; i < sizeof enumerate; i++) {
        proto_rx(&n, enumerate[i], 0);
    }
    if (n_out != 9 || out[0] != 0xA5 || out[3] != 1 || out[5] != 1 || crc16(out + 1, 8) != 0 || n.address != 1) {
        abort(); /* the node no longer forwards a good frame correctly */
    }
    if ((out[6] & 0x7F) != pending || n.fault != 0) {
        abort(); /* the report went out once, in the frame after the bad one */
    }
    return 0;
}
