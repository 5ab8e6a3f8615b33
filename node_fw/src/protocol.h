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
#define MAX_SLOTS 64
#define SLOT_SIZE 8
#define PROTO_LAG 2
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

/* Everything the protocol reads from or changes in the node. */
typedef struct {
    uint8_t address; /* 1..64, 0 = none yet */
    uint8_t flags;   /* SCAN record flags, latched bits included */
    uint8_t bad;     /* bad frames seen, mod 256 */
    uint8_t scans;   /* SCAN records delivered, mod 256 */
    uint16_t mv;     /* latest measurement */
    int16_t temp;    /* 0.1 degC, TEMP_NONE when unknown */
    settings_t settings;
    uint8_t reset_cause; /* MCUSR at start */
    uint32_t uptime;     /* seconds */
    /* set by the protocol, consumed by main: */
    uint8_t identify;         /* IDENTIFY was received */
    uint8_t settings_written; /* WRITE applied: store to EEPROM */
    uint8_t frame_end;        /* a frame ended: 1 with a good CRC at this node, 2 bad (for the trim) */
    trim_t trim;              /* the clock trim, reported by CLOCK (section 3.4) */
} node_t;

void proto_reset(void);
void proto_rx(node_t *n, uint8_t byte, uint8_t framing_error);
void proto_timeout(node_t *n);
uint8_t proto_in_frame(void);

/* Provided by the caller. Returns 0 if the byte could not be queued (TX FIFO overflow). */
uint8_t proto_emit(uint8_t byte);

#endif
