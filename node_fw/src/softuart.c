/* Timing: Timer0 runs free at F_CPU/8. TX: each compare-A interrupt drives the next bit and adds
 * BIT_TICKS to OCR0A. RX: INT0 catches the start bit's falling edge and schedules compare B half a
 * bit later (mid start bit, where a glitch is rejected); each compare-B interrupt samples one bit.
 * The two directions share the timer but not their compare units, so a node forwards while it
 * receives. Interrupts are kept to a few dozen cycles so one never delays another by more than a
 * small fraction of a bit (104 us at 8 MHz). */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "softuart.h"

static volatile uint8_t tx_fifo[TX_FIFO_SIZE];
static volatile uint8_t tx_head, tx_tail; /* head: next to send; tail: next free */
static volatile uint8_t tx_busy;
static volatile uint8_t tx_shift, tx_bit;

static volatile uint8_t rx_q[RX_QUEUE_SIZE], rx_fe[RX_QUEUE_SIZE];
static volatile uint8_t rx_head, rx_tail;
static volatile uint8_t rx_shift, rx_bit, rx_lost;

static volatile uint16_t ovf_ticks;

void softuart_init(void)
{
    PORTB |= (1 << TX_PIN); /* idle high */
    DDRB |= (1 << TX_PIN);
    DDRB &= (uint8_t)~(1 << RX_PIN);
#ifndef SIM_NO_PULLUP
    /* Keeps a disconnected RX from floating. simavr 1.6 lets an enabled pull-up override the level
     * its harness drives, so the simulation build (make SIM=1) leaves it off. */
    PORTB |= (1 << RX_PIN);
#endif
    TCCR0A = 0;
    TCCR0B = (1 << CS01); /* F_CPU/8, normal mode */
    TIMSK |= (1 << TOIE0);
    MCUCR = (uint8_t)((MCUCR & ~((1 << ISC01) | (1 << ISC00))) | (1 << ISC01)); /* INT0 on falling edge */
    GIFR = (1 << INTF0);
    GIMSK |= (1 << INT0);
}

uint16_t softuart_ovf_ticks(void)
{
    uint8_t s = SREG;
    cli();
    uint16_t t = ovf_ticks;
    SREG = s;
    return t;
}

ISR(TIM0_OVF_vect)
{
    ovf_ticks++;
}

/* ---- transmit ---------------------------------------------------------------------------------- */

static void tx_start_byte(uint8_t b) /* interrupts off */
{
    tx_shift = b;
    tx_bit = 0;
    PORTB &= (uint8_t)~(1 << TX_PIN); /* start bit */
}

uint8_t softuart_put(uint8_t b)
{
    uint8_t s = SREG;
    cli();
    uint8_t ok = 1;
    if (!tx_busy) {
        tx_busy = 1;
        tx_start_byte(b);
        OCR0A = (uint8_t)(TCNT0 + BIT_TICKS);
        TIFR = (1 << OCF0A);
        TIMSK |= (1 << OCIE0A);
    } else {
        uint8_t next = (uint8_t)((tx_tail + 1) % TX_FIFO_SIZE);
        if (next == tx_head) {
            ok = 0;
        } else {
            tx_fifo[tx_tail] = b;
            tx_tail = next;
        }
    }
    SREG = s;
    return ok;
}

uint8_t softuart_tx_idle(void)
{
    return !tx_busy;
}

ISR(TIM0_COMPA_vect)
{
    OCR0A += BIT_TICKS;
    uint8_t bit = tx_bit;
    if (bit < 8) {
        if (tx_shift & 1) {
            PORTB |= (1 << TX_PIN);
        } else {
            PORTB &= (uint8_t)~(1 << TX_PIN);
        }
        tx_shift >>= 1;
        tx_bit = bit + 1;
    } else if (bit == 8) {
        PORTB |= (1 << TX_PIN); /* stop bit */
        tx_bit = 9;
    } else if (tx_head != tx_tail) { /* stop bit done: next byte back to back */
        tx_start_byte(tx_fifo[tx_head]);
        tx_head = (uint8_t)((tx_head + 1) % TX_FIFO_SIZE);
    } else {
        TIMSK &= (uint8_t)~(1 << OCIE0A);
        tx_busy = 0;
    }
}

/* ---- receive ----------------------------------------------------------------------------------- */

ISR(INT0_vect)
{
    /* the edge was a few cycles ago; half a bit from now is the middle of the start bit */
    OCR0B = (uint8_t)(TCNT0 + HALF_BIT_TICKS);
    TIFR = (1 << OCF0B);
    TIMSK |= (1 << OCIE0B);
    GIMSK &= (uint8_t)~(1 << INT0);
    rx_bit = 0;
}

static void rx_rearm(void)
{
    TIMSK &= (uint8_t)~(1 << OCIE0B);
    GIFR = (1 << INTF0); /* forget edges seen inside the byte */
    GIMSK |= (1 << INT0);
}

ISR(TIM0_COMPB_vect)
{
    uint8_t level = PINB & (1 << RX_PIN);
    OCR0B += BIT_TICKS;
    uint8_t bit = rx_bit;
    if (bit == 0) {
        if (level) {
            rx_rearm(); /* a glitch, not a start bit */
            return;
        }
    } else if (bit <= 8) {
        rx_shift >>= 1;
        if (level) {
            rx_shift |= 0x80;
        }
    } else {
        uint8_t next = (uint8_t)((rx_tail + 1) % RX_QUEUE_SIZE);
        if (next == rx_head) {
            rx_lost = 1; /* the main loop fell behind: reported as a framing error on the next byte */
        } else {
            rx_q[rx_tail] = rx_shift;
            rx_fe[rx_tail] = (uint8_t)((level == 0) || rx_lost);
            rx_lost = 0;
            rx_tail = next;
        }
        rx_rearm();
        return;
    }
    rx_bit = bit + 1;
}

uint8_t softuart_get(uint8_t *b, uint8_t *framing_error)
{
    uint8_t s = SREG;
    cli();
    uint8_t got = 0;
    if (rx_head != rx_tail) {
        *b = rx_q[rx_head];
        *framing_error = rx_fe[rx_head];
        rx_head = (uint8_t)((rx_head + 1) % RX_QUEUE_SIZE);
        got = 1;
    }
    SREG = s;
    return got;
}

uint8_t softuart_rx_pending(void)
{
    return rx_head != rx_tail;
}
