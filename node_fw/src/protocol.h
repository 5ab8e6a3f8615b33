/* The ring protocol as one streaming state machine (docs/protocol.md). Pure: no hardware access.
 * Received bytes go in through proto_rx(); the bytes to transmit come out through proto_emit(),
 * which the caller provides (the soft UART's TX FIFO on the node, a buffer in the host tests). */
#ifndef PROTOCOL_H
#define PROTOCOL_H
#include <stdint.h>
#include "settings.h"
#include "trim.h"

#define PROTO_SOF 0xA5
#define CMD_ENUMERATE 0x01
#define CMD_SCAN 0x02
#define CMD_INFO 0x03
#define CMD_READ 0x04
#define CMD_WRITE 0x05
#define CMD_IDENTIFY 0x06
#define CMD_CLOCK 0x07
#define CMD_SNAP 0x08     /* protocol 1.1: sample at one instant (section 3.5) */
#define SNAP_BYTE_TICKS 44 /* a SNAP's BYTE: the hub sent it with two stop bits, 11 bits a byte (section 3.5) */
#define SNAP_CNT 8         /* a SNAP's slots: 73 bytes, SOF to last byte 72 * 44 ticks (83 ms) */
#define SNAP_FRAME_TICKS ((uint16_t)(SNAP_CNT + 1) * 8 * SNAP_BYTE_TICKS)
#define CMD_SNAPREAD 0x09 /* protocol 1.1: read the snapshot, slot = address (section 3.5) */
#define MAX_SLOTS 64
#define SLOT_SIZE 8
#define FAULT_NO_ADDRESS 127
#define STATUS_DONE 0x80

#define FLAG_SENSOR_FAULT 0x01
#define FLAG_NOT_CALIBRATED 0x02
#define FLAG_RESET_POWER 0x04
#define FLAG_RESET_BROWNOUT 0x08
#define FLAG_RESET_WATCHDOG 0x10
#define FLAG_RX_ERROR 0x20
#define FLAG_VOLTAGE_FAULT 0x40
#define FLAG_CLOCK_FAULT 0x80 /* the clock trim is at the end of its range and the clock is still off */
#define LATCHED_FLAGS (FLAG_RESET_POWER | FLAG_RESET_BROWNOUT | FLAG_RESET_WATCHDOG | FLAG_RX_ERROR)

#define TEMP_NONE INT16_MIN

/* node_t.snap: where the node is with a snapshot (docs/protocol.md 3.5) */
#define SNAP_NONE 0
#define SNAP_REQUESTED 1 /* protocol -> main: a good SNAP ended; snap_wait ticks from now */
#define SNAP_WAITING 2   /* main: the sample instant is set, the UART tick keeps time to it */
#define SNAP_MEASURING 3 /* main: the snapshot's ADC cycle is under way */
#define SNAP_READY 4     /* the snapshot's values are stored: SNAPREAD reports them */

/* Everything the protocol reads from or changes in the node. flags..scans are laid out as bytes 1..7 of
 * the SCAN record (little-endian, no padding on the AVR or a host), and snap_flags..snap_seq as the
 * SNAPREAD record's: protocol.c copies either record in one go (protocol.c checks the layout). */
typedef struct {
    uint8_t address; /* 1..64, 0 = none yet */
    uint8_t flags;   /* SCAN record flags, latched bits included */
    uint16_t mv;     /* latest measurement */
    int16_t temp;    /* 0.1 degC, TEMP_NONE when unknown */
    uint8_t bad;     /* bad frames seen, mod 256 */
    uint8_t scans;   /* SCAN records delivered, mod 256 */
    /* the bank snapshot (section 3.5) */
    uint8_t snap;        /* SNAP_* */
    uint8_t snap_flags;  /* SNAP_READY: flags, voltage, temperature and bad count at the sample instant */
    uint16_t snap_mv;
    int16_t snap_temp;
    uint8_t snap_bad;
    uint8_t snap_seq;    /* SEQ of the SNAP request the snapshot belongs to */
    uint16_t snap_wait;  /* SNAP_REQUESTED: ticks (1/38400 s) from the frame's end to the sample instant */
    int16_t snap_dev;    /* this node's hop against the nominal, 1/256 hub tick, as its last SNAP measured it */
    settings_t settings;
    uint8_t reset_cause; /* MCUSR at start */
    uint32_t uptime;     /* seconds */
    /* set by the protocol, consumed by main: */
    uint8_t identify;         /* IDENTIFY was received */
    uint8_t settings_written; /* WRITE applied: store to EEPROM */
    uint8_t frame_end;        /* a frame ended: 1 with a good CRC at this node, 2 bad (for the trim) */
    uint8_t fault;            /* the last frame was bad here: FAULT for the next frame's STATUS (section 4) */
    trim_t trim;              /* the clock trim, reported by CLOCK (section 3.4) */
} node_t;

void proto_reset(void);
void proto_rx(node_t *n, uint8_t byte, uint8_t framing_error);
void proto_timeout(node_t *n);
uint8_t proto_in_frame(void);

/* Provided by the caller. Returns 0 if the byte could not be queued (TX FIFO overflow). */
uint8_t proto_emit(uint8_t byte);

#endif
