/* Pins and clock-derived constants for the Pack Monitor node (ATtiny85). */
#ifndef BOARD_H
#define BOARD_H

#ifndef F_CPU
#define F_CPU 8000000UL /* internal RC; the Digispark build sets 16500000 (micronucleus-tuned PLL) */
#endif

#define RING_BAUD 9600UL

/* Ring pins. RX is INT0 so a start bit's falling edge is caught by hardware; TX is any output. */
#define RX_PIN PB2
#define TX_PIN PB0
#define LED_PIN PB1 /* the Digispark's on-board LED */
#define EXT_SENSOR_PIN PB4 /* ADC2: TMP36 output or NTC divider tap */
#define EXT_SENSOR_MUX 2
#define NTC_SUPPLY_PIN PB3 /* driven high only while the NTC divider is measured */

/* The soft UART runs on one fixed tick: Timer0 in CTC mode at 4x the baud rate (38.4 kHz), never
 * re-programmed while running. Each tick samples RX and, every 4th tick, drives the next TX bit.
 * (Re-aiming compare registers at TCNT+offset per bit needs fewer interrupts but is fragile; simavr,
 * which the tests run the image in, mis-times it.) At 8 MHz: 26 timer counts per tick (+0.16 % baud
 * error); at 16.5 MHz: 54 counts (-0.54 %). */
#define TIMER_PRESCALE 8UL
#define TIMER_HZ (F_CPU / TIMER_PRESCALE)
#define TICKS_PER_BIT 4
#define TICK_HZ (RING_BAUD * TICKS_PER_BIT)
#define TICK_COUNTS ((TIMER_HZ + TICK_HZ / 2) / TICK_HZ)
#if TICK_COUNTS > 256 || TICK_COUNTS < 20
#error "the tick does not fit Timer0 at this F_CPU and baud"
#endif
#define TICK_OCR ((uint8_t)(TICK_COUNTS - 1))
#define TICKS_PER_SECOND ((uint32_t)(TIMER_HZ / TICK_COUNTS))
/* docs/protocol.md section 4: a frame is abandoned after 3 byte times of silence. */
#define RX_TIMEOUT_TICKS ((uint16_t)(3 * 10 * TICKS_PER_BIT + 2))

/* ADC clock must be 50..200 kHz for full resolution. */
#if F_CPU > 12800000UL
#define ADC_PRESCALER_BITS ((1 << ADPS2) | (1 << ADPS1) | (1 << ADPS0)) /* /128 */
#else
#define ADC_PRESCALER_BITS ((1 << ADPS2) | (1 << ADPS1)) /* /64 */
#endif

#define FW_MAJOR 1
#define FW_MINOR 0

#endif
