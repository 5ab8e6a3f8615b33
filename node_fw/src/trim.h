/* The node's clock trim (docs/node_fw.md "Clock trim"; tools/packmon/sim/trim_model.py is the same
 * logic for the Python model ring). Pure: it computes the OSCCAL value the node should run at; the
 * caller (main.c) walks the register there in steps of at most ~2 %. */
#ifndef TRIM_H
#define TRIM_H
#include <stdint.h>
#include "board.h"

/* trim_t.state bits, as in the CLOCK record (docs/protocol.md section 3.4) */
#define TRIM_LOCKED 0x01   /* tracking: only frames with a good CRC move the trim (dither; OSCCAL one LSB) */
#define TRIM_LIMIT 0x02    /* OSCCAL is at the end of its range and the clock is still off */
#define TRIM_EEPROM 0x04   /* started from the value stored in EEPROM */
#define TRIM_MEASURED 0x08 /* a clean SOF measurement has been made since the start */
#define TRIM_OFF 0x10      /* this image does not trim (built with TRIM=0) */

#define TRIM_SPAN_BITS 12  /* a SOF's rising edges 1..8 (7 bits) + falling edges 2..7 (5 bits) */
#define TRIM_LSB_PPM 7100UL /* the typical OSCCAL step near 8 MHz; only the dead band uses it */
#define TRIM_K_LOW 69      /* f ~ a (1 + c / K): one LSB at c is 1 / (c + K) of the frequency */
#define TRIM_K_HIGH 106
#define TRIM_LOSE_AFTER 8  /* bad frames in a row, all measured > 2 LSB off the same way: lock lost */
#define TRIM_LOCK_AFTER 2  /* good frames in a row within 1.5 LSB: locked */
#define TRIM_PLAUSIBLE 4   /* a SOF more than 1/4 off is not from a node of this ring */
#define TRIM_NONE INT16_MIN
/* Timer0 counts over 12 bit times at the node's own nominal rate: 1248 at 8 MHz (board.h) */
#define TRIM_NOMINAL ((int16_t)(TRIM_SPAN_BITS * TICKS_PER_BIT * TICK_COUNTS))
#define TRIM_LSB_COUNTS ((int16_t)(((uint32_t)TRIM_NOMINAL * TRIM_LSB_PPM + 500000UL) / 1000000UL))
/* Tracking below one OSCCAL step: the tick's length is dithered (softuart.c) by a signed fraction of a
 * Timer0 count per tick, in 1/TRIM_DITHER_ONE count. An error of e counts over the SOF's 48 ticks
 * wants e/48 counts more per tick: 2e units. */
#define TRIM_DITHER_ONE 96
#define TRIM_DITHER_MAX 95 /* |dither| < one count a tick: 1.8 % at 16.5 MHz, 3.7 % at 8 MHz */
#define TRIM_DITHER_LSB (2 * TRIM_LSB_COUNTS) /* one OSCCAL step in dither units: 18 at 8 MHz */

typedef struct {
    uint8_t osccal;   /* the value the node should run at */
    uint8_t osccal0;  /* OSCCAL at reset (factory or bootloader value) */
    uint8_t state;
    int8_t err01;     /* the last clean measurement: own clock against upstream, 0.1 % (clamped) */
    uint8_t clean;    /* clean measurements, mod 256 */
    uint8_t steps;    /* OSCCAL LSBs moved in all, mod 256 */
    uint8_t ee_writes; /* EEPROM stores since the start */
    uint8_t ee_value; /* the value in EEPROM, 0xFF none */
    /* internal */
    int16_t pending;  /* this frame's SOF error in counts, TRIM_NONE if it was not measured clean */
    uint8_t near_run, off_run;
    int8_t off_sign;
    int8_t dither;    /* the tick's extra length now, 1/TRIM_DITHER_ONE Timer0 count per tick (locked; else 0) */
    int8_t filt;      /* the dither as of the last good frame: the measured error, filtered */
    uint8_t half;     /* the filter's lost half unit (0/1), carried into the next SOF: no rounding bias */
    uint8_t half_next; /* this frame's, taken over when its CRC checks out */
} trim_t;

void trim_init(trim_t *t, uint8_t osccal_now, uint8_t stored);
/* A SOF measured: span Timer0 counts over its 12 bit times (TRIM_NOMINAL at the node's own rate).
 * Returns 1 if the OSCCAL target moved (acquisition: walk there before forwarding). */
uint8_t trim_sof(trim_t *t, uint16_t span);
/* The frame ended; good: its CRC (and framing) checked out at this node. Returns 1 if the target moved. */
uint8_t trim_frame_end(trim_t *t, uint8_t good);
/* Whether the EEPROM value should be rewritten now (rate-limited by the caller). */
uint8_t trim_store_wanted(const trim_t *t);

#endif
