/* Full-duplex soft UART on one fixed tick (board.h): Timer0 in CTC mode interrupts at 4x the baud
 * rate. Each tick:
 *   RX: while idle, look for the start bit's low level; once seen, sample 2 ticks later (the middle
 *       of the start bit, to reject a glitch) and then every 4 ticks: 8 data bits, then the stop bit.
 *   TX: every 4th tick drive the next bit of the byte being sent; take the next byte from the FIFO
 *       back to back.
 * The interrupt is short (a few dozen cycles of the 208 between ticks at 8 MHz), and nothing else
 * runs with interrupts disabled for more than a few instructions, so the tick is never late by more
 * than a small fraction of itself. */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "softuart.h"

static volatile uint8_t tx_fifo[TX_FIFO_SIZE];
static volatile uint8_t tx_head, tx_tail; /* head: next to send; tail: next free */
static uint8_t tx_shift, tx_bit, tx_phase, tx_busy;

static volatile uint8_t rx_q[RX_QUEUE_SIZE], rx_fe[RX_QUEUE_SIZE];
static volatile uint8_t rx_head, rx_tail;
static uint8_t rx_shift, rx_bit, rx_phase, rx_active, rx_lost;

static volatile uint16_t ticks;

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
    TCCR0A = (1 << WGM01); /* CTC: the counter restarts at OCR0A */
    OCR0A = TICK_OCR;
    TCNT0 = 0;
    TCCR0B = (1 << CS01); /* F_CPU/8 */
    TIFR = (1 << OCF0A);
    TIMSK |= (1 << OCIE0A);
}

uint16_t softuart_ticks(void)
{
    uint8_t s = SREG;
    cli();
    uint16_t t = ticks;
    SREG = s;
    return t;
}

uint8_t softuart_put(uint8_t b)
{
    uint8_t next = (uint8_t)((tx_tail + 1) % TX_FIFO_SIZE);
    if (next == tx_head) {
        return 0; /* full */
    }
    tx_fifo[tx_tail] = b;
    tx_tail = next; /* a single-byte store: the interrupt sees the byte only once it is written */
    return 1;
}

uint8_t softuart_tx_idle(void)
{
    return !tx_busy && tx_head == tx_tail;
}

ISR(TIM0_COMPA_vect)
{
    /* RX first: its sample time matters most */
    uint8_t level = PINB & (1 << RX_PIN);
    if (!rx_active) {
        if (!level) {
            rx_active = 1;
            rx_bit = 0;
            rx_phase = TICKS_PER_BIT / 2;
        }
    } else if (--rx_phase == 0) {
        rx_phase = TICKS_PER_BIT;
        if (rx_bit == 0) {
            if (level) {
                rx_active = 0; /* a glitch, not a start bit */
            }
        } else if (rx_bit <= 8) {
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
            /* sampled mid stop bit: look for the next start bit from here on */
            rx_active = 0;
        }
        rx_bit++;
    }

    if (tx_phase) {
        tx_phase--;
    } else if (tx_busy) {
        tx_phase = TICKS_PER_BIT - 1;
        if (tx_bit < 8) {
            if (tx_shift & 1) {
                PORTB |= (1 << TX_PIN);
            } else {
                PORTB &= (uint8_t)~(1 << TX_PIN);
            }
            tx_shift >>= 1;
            tx_bit++;
        } else if (tx_bit == 8) {
            PORTB |= (1 << TX_PIN); /* stop bit */
            tx_bit = 9;
        } else {
            tx_busy = 0; /* stop bit done; the next byte can start on this very tick */
            tx_phase = 0;
        }
    }
    if (!tx_busy && !tx_phase && tx_head != tx_tail) {
        tx_shift = tx_fifo[tx_head];
        tx_head = (uint8_t)((tx_head + 1) % TX_FIFO_SIZE);
        PORTB &= (uint8_t)~(1 << TX_PIN); /* start bit */
        tx_bit = 0;
        tx_busy = 1;
        tx_phase = TICKS_PER_BIT - 1;
    }
    ticks++;
}

uint8_t softuart_get(uint8_t *b, uint8_t *framing_error)
{
    if (rx_head == rx_tail) {
        return 0;
    }
    *b = rx_q[rx_head];
    *framing_error = rx_fe[rx_head];
    rx_head = (uint8_t)((rx_head + 1) % RX_QUEUE_SIZE);
    return 1;
}

uint8_t softuart_rx_pending(void)
{
    return rx_head != rx_tail;
}
