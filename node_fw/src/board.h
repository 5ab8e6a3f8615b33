/* Pins and clock-derived constants for the Pack Monitor node (ATtiny85). */
#ifndef BOARD_H
#define BOARD_H

#ifndef F_CPU
#define F_CPU 8000000UL /* internal RC; the Digispark build sets 16500000 (micronucleus-tuned PLL) */
#endif

#define RING_BAUD 9600UL

/* Ring pins. RX is PB2 (PCINT2; INT0 too): while the ring is quiet, its pin-change interrupt catches a
 * start bit's falling edge. TX is any output. */
#define RX_PIN PB2
#define TX_PIN PB0
#define LED_PIN PB1 /* the Digispark's on-board LED */
#define EXT_SENSOR_PIN PB4 /* ADC2: TMP36 output or NTC divider tap */
#define EXT_SENSOR_MUX 2
#define NTC_SUPPLY_PIN PB3 /* driven high only while the NTC divider is measured */

/* Timer0 is the soft UART's tick and the node's clock; it runs in one of two modes (softuart.c).
 *
 * TICK mode, while a frame is on the line or bytes are queued: CTC at 4x the baud rate (38.4 kHz),
 * never re-programmed while running. Each tick samples RX and, every 4th tick, drives the next TX bit.
 * (Re-aiming compare registers at TCNT+offset per bit needs fewer interrupts but is fragile; simavr,
 * which the tests run the image in, mis-times it.) At 8 MHz: 26 timer counts per tick (+0.16 % baud
 * error); at 16.5 MHz: 54 counts (-0.54 %).
 *
 * IDLE mode, while the ring is quiet: normal mode at F_CPU/256, one overflow interrupt every ~8 ms (at
 * 8 MHz; ~4 ms at 16.5 MHz) keeps the clock and wakes the main loop; a pin-change interrupt on RX brings
 * the tick back at the next start bit. Timer1 is not used for the slow clock because simavr 1.6 models
 * the ATtiny85's Timer1 wrongly (no overflow at prescalers /1 and /32../16384, an interrupt storm at
 * /2../16), so the tests could not check it; one timer in two modes also keeps a second timer's
 * interrupt from delaying the UART tick during frames. */
#define TIMER_PRESCALE 8UL
#define TIMER_HZ (F_CPU / TIMER_PRESCALE)
#define TICKS_PER_BIT 4
#define TICK_HZ (RING_BAUD * TICKS_PER_BIT)
#define TICK_COUNTS ((TIMER_HZ + TICK_HZ / 2) / TICK_HZ)
#if TICK_COUNTS > 256 || TICK_COUNTS < 20
#error "the tick does not fit Timer0 at this F_CPU and baud"
#endif
#define TICK_OCR ((uint8_t)(TICK_COUNTS - 1))

/* The clock (softuart_clock()) counts Timer0 counts of TICK mode, "units" of TIMER_PRESCALE CPU cycles
 * (1 us at 8 MHz), in both modes: a 16-bit counter that wraps every 65536 units (65 ms at 8 MHz, 32 ms
 * at 16.5 MHz); the main loop, which runs at least once per IDLE overflow, extends it. */
#if F_CPU % TIMER_PRESCALE
#error "F_CPU must be a multiple of the timer prescaler for an exact clock"
#endif
#define CLOCK_HZ TIMER_HZ /* units per second */
#define IDLE_PRESCALE 256UL
#define IDLE_CS (1 << CS02) /* F_CPU/256 */
#define IDLE_UNITS_PER_COUNT (IDLE_PRESCALE / TIMER_PRESCALE)
#define IDLE_TICK_UNITS (256U * IDLE_UNITS_PER_COUNT) /* one IDLE overflow: 8192 units */
#define HOUSEKEEPING_UNITS (32U * TICK_COUNTS) /* 0.83 ms: the main loop's pace in TICK mode */
/* docs/protocol.md section 4: a frame is abandoned after 3 byte times of silence. */
#define RX_TIMEOUT_UNITS ((3U * 10 * TICKS_PER_BIT + 2) * TICK_COUNTS)
#if IDLE_TICK_UNITS > 16384 || RX_TIMEOUT_UNITS > 16384
#error "the 16-bit clock would wrap too soon"
#endif

/* Waking at a start bit, the tick restarts so that its first interrupt comes about half a tick after the
 * edge: the RX state machine then confirms the start bit 2 ticks later, 0.625 bit into it, which is where
 * a free-running tick samples on average (anywhere from 0.5 to 0.75 bit). WAKE_LATENCY_CYCLES is the time
 * from the edge to the TCNT0 write in the pin-change interrupt: on the chip ~3 cycles of pin
 * synchroniser, 4 to wake from idle, 4 of interrupt response, 2 for the vector's jump, then 29 in the
 * handler (avr-gcc 5.4 -Os: register saves, the idle check, the two reads, the timer writes); simavr
 * shows ~46 from the harness's edge. Being off by 8 cycles moves the sample point by 1 % of a bit. */
#define WAKE_LATENCY_CYCLES 44
#define WAKE_FIRST_COUNTS (TICK_COUNTS / 2 - (WAKE_LATENCY_CYCLES + TIMER_PRESCALE / 2) / TIMER_PRESCALE)
#define WAKE_TCNT ((uint8_t)(TICK_COUNTS - WAKE_FIRST_COUNTS))
#if WAKE_FIRST_COUNTS < 2
#error "the tick cannot restart half a tick after the start edge at this F_CPU"
#endif

/* The TX edge's place in its tick: this many Timer0 counts after the compare match (72 CPU cycles at
 * any F_CPU), later than the tick interrupt's entry even when the main loop had interrupts off. */
#define TX_EDGE_COUNTS (72 / TIMER_PRESCALE)
#if TX_EDGE_COUNTS >= TICK_COUNTS / 2
#error "the TX edge would come too late in the tick"
#endif

/* ADC clock must be 50..200 kHz for full resolution. */
#if F_CPU > 12800000UL
#define ADC_PRESCALER_BITS ((1 << ADPS2) | (1 << ADPS1) | (1 << ADPS0)) /* /128 */
#else
#define ADC_PRESCALER_BITS ((1 << ADPS2) | (1 << ADPS1)) /* /64 */
#endif

#define FW_MAJOR 1
#define FW_MINOR 4

#endif
