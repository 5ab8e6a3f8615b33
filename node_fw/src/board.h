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

/* Timer0 runs free at F_CPU/8: 1 us per tick at 8 MHz, 0.485 us at 16.5 MHz. One bit at 9600 baud
 * is 104 ticks at 8 MHz and 215 at 16.5 MHz: both fit the 8-bit compare registers, so each bit is
 * timed by adding BIT_TICKS to OCR0A (TX) or OCR0B (RX) and letting the counter wrap. */
#define TIMER_PRESCALE 8UL
#define TIMER_HZ (F_CPU / TIMER_PRESCALE)
#define BIT_TICKS ((uint8_t)((TIMER_HZ + RING_BAUD / 2) / RING_BAUD))
#define HALF_BIT_TICKS ((uint8_t)(BIT_TICKS / 2))
#if (TIMER_HZ + RING_BAUD / 2) / RING_BAUD > 250
#error "baud too low for an 8-bit timer at this F_CPU"
#endif

/* The overflow interrupt (every 256 ticks) is the node's slow clock. */
#define OVF_PER_BYTE_X16 ((uint32_t)(10UL * 16UL * TIMER_HZ / RING_BAUD / 256UL))
/* docs/protocol.md section 4: a frame is abandoned after 3 byte times of silence; rounded up. */
#define RX_TIMEOUT_OVF ((uint16_t)((3UL * 10UL * TIMER_HZ / RING_BAUD + 255UL) / 256UL + 1UL))

/* ADC clock must be 50..200 kHz for full resolution. */
#if F_CPU > 12800000UL
#define ADC_PRESCALER_BITS ((1 << ADPS2) | (1 << ADPS1) | (1 << ADPS0)) /* /128 */
#else
#define ADC_PRESCALER_BITS ((1 << ADPS2) | (1 << ADPS1)) /* /64 */
#endif

#define FW_MAJOR 1
#define FW_MINOR 0

#endif
