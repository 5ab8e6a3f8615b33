/* Full-duplex soft UART on Timer0, which is also the node's clock (board.h).
 *
 * TICK mode: Timer0 in CTC mode interrupts at 4x the baud rate. Each tick:
 *   RX: while idle, look for the start bit's low level; once seen, sample 2 ticks later (the middle
 *       of the start bit, to reject a glitch) and then every 4 ticks: 8 data bits, then the stop bit.
 *   TX: every 4th tick drive the next bit of the byte being sent; take the next byte from the FIFO
 *       back to back.
 * The interrupt is short (a few dozen cycles of the 208 between ticks at 8 MHz), and nothing else
 * runs with interrupts disabled for more than a few instructions, so the tick is never late by more
 * than a small fraction of itself.
 *
 * IDLE mode: when the main loop finds the ring quiet (no frame, nothing received, queued or being
 * sent, RX high) it calls softuart_idle(): Timer0 switches to normal mode at F_CPU/256 and only its
 * overflow interrupts (~8 ms), and RX's pin-change interrupt is armed. A start bit's falling edge
 * wakes the CPU and switches back to TICK mode, the tick phase-aligned to the edge (WAKE_TCNT), so
 * the first byte is received exactly as if the tick had been running.
 *
 * The clock counts units of 8 CPU cycles across both modes: TICK_COUNTS per tick, IDLE_TICK_UNITS per
 * overflow, and at each switch the part of the period that had passed (read from TCNT0), so uptime
 * does not depend on how often the ring is busy. */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "softuart.h"
#include "trim.h"

static volatile uint8_t tx_fifo[TX_FIFO_SIZE];
static volatile uint8_t tx_head, tx_tail; /* head: next to send; tail: next free */
static uint8_t tx_shift, tx_bit, tx_phase, tx_busy;

static volatile uint8_t rx_q[RX_QUEUE_SIZE], rx_fe[RX_QUEUE_SIZE];
static volatile uint8_t rx_head, rx_tail;
static uint8_t rx_shift, rx_bit, rx_phase, rx_active, rx_lost;

static volatile uint16_t clock_units;
#ifndef NO_TRIM
volatile int8_t softuart_dither;
static int8_t dither_acc;
#endif
static volatile uint8_t idle; /* Timer0 is in IDLE mode and the pin-change interrupt is armed */

/* TICK mode, the first tick TICK_COUNTS - tcnt counts from now (TCNT0 counts on from tcnt).
 * Inlined: it runs in the pin-change interrupt, where a call would cost a dozen register saves. */
static inline __attribute__((always_inline)) void tick_start(uint8_t tcnt)
{
    /* the timer first: after a wake-up these writes set the sample phase (WAKE_LATENCY_CYCLES) */
    TCCR0A = (1 << WGM01); /* CTC: the counter restarts at OCR0A */
    TCCR0B = (1 << CS01);  /* F_CPU/8 */
    GTCCR = (1 << PSR0);   /* restart the prescaler: the first count comes a full 8 cycles from here */
    TCNT0 = tcnt;          /* after the clock select: simavr 1.6 loses a TCNT0 written while stopped */
    TIFR = (1 << OCF0A) | (1 << TOV0); /* OCF0A was set by compare matches in normal mode */
    TIMSK = (uint8_t)((TIMSK & (uint8_t)~(1 << TOIE0)) | (1 << OCIE0A));
    GIMSK &= (uint8_t)~(1 << PCIE); /* from here the tick samples RX */
}

/* IDLE -> TICK, TCNT0 starting at tcnt. Interrupts off. */
static inline __attribute__((always_inline)) void leave_idle(uint8_t tcnt)
{
    /* Read how far into the IDLE period we are before touching the timer. An overflow that is
     * flagged but not yet serviced (this interrupt outranks it) happened before TCNT0 was read if
     * TCNT0 is still small; if TCNT0 is large the overflow came just after the read, and the read
     * already counts (nearly) the whole period. */
    uint8_t c = TCNT0;
    uint8_t ovf = TIFR & (1 << TOV0);
    tick_start(tcnt);
    /* The count read is whole counts of IDLE_UNITS_PER_COUNT units: add half a count for the part
     * of a count that had passed. TCNT0 restarts at tcnt, which the first tick will count as passed,
     * so tcnt comes off here; but never below zero (a start bit in the first count of the IDLE
     * period): the clock must not run backwards, the main loop takes differences of it. That case
     * over-counts by at most tcnt - 16 units (3 us at 8 MHz, 8 us at 16.5 MHz). */
    uint16_t add = (uint16_t)(c * IDLE_UNITS_PER_COUNT + IDLE_UNITS_PER_COUNT / 2);
    if (ovf && c < 128) {
        add += IDLE_TICK_UNITS;
    }
    clock_units += add > tcnt ? (uint16_t)(add - tcnt) : 0;
    idle = 0;
}

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
    PCMSK = (1 << PCINT2); /* only RX; the interrupt itself is enabled in IDLE mode only (GIMSK) */
    OCR0A = TICK_OCR;      /* never changes: in IDLE mode the compare interrupt is off */
    tick_start(0);
}

uint16_t softuart_clock(void)
{
    uint8_t s = SREG;
    cli();
    uint16_t t = clock_units;
    SREG = s;
    return t;
}

uint8_t softuart_put(uint8_t b)
{
    uint8_t next = (uint8_t)((tx_tail + 1) % TX_FIFO_SIZE);
    /* Full, or the tick stopped. The latter is not reached: the protocol sends only while it handles
     * a received byte, which the main loop has taken from the RX queue, and the main loop stops the
     * tick (softuart_idle) only with that queue and the FIFO empty, outside a frame. Refused rather
     * than left in the FIFO with nothing to send it (the protocol counts it as an overflow); waking
     * the tick from here cost 100 bytes of flash for a case that does not happen. */
    if (next == tx_head || idle) {
        return 0;
    }
    tx_fifo[tx_tail] = b;
    tx_tail = next; /* a single-byte store: the interrupt sees the byte only once it is written */
    return 1;
}

uint8_t softuart_tx_idle(void)
{
    return !tx_busy && tx_head == tx_tail;
}

uint8_t softuart_idle(void)
{
    if (idle) {
        return 1;
    }
    if (rx_active || tx_busy || tx_head != tx_tail || rx_head != rx_tail) {
        return 0;
    }
    /* Arm the pin-change interrupt, then look at the line: a start bit that began before the
     * interrupt was armed shows as a low level (the tick keeps running and will see it); one that
     * begins from here on sets the flag, and the interrupt runs as soon as interrupts are enabled. */
    GIFR = (1 << PCIF);
    GIMSK |= (1 << PCIE);
    if (!(PINB & (1 << RX_PIN))) {
        GIMSK &= (uint8_t)~(1 << PCIE);
        return 0;
    }
    /* Units since the last tick; a tick flagged but not serviced (interrupts are off) with a small
     * TCNT0 happened before the read: its RX sample and TX step have nothing to do (the line is
     * high, nothing to send), only its time is counted. */
    uint8_t c = TCNT0;
    uint8_t due = TIFR & (1 << OCF0A);
#ifndef NO_TRIM
    OCR0A = TICK_OCR; /* undithered: sof_poll() counts TICK_COUNTS a wrap */
#endif
    TCCR0A = 0;       /* normal mode: TOV0 every 256 counts */
    TCCR0B = IDLE_CS;
    GTCCR = (1 << PSR0);
    TCNT0 = 0;
    TIFR = (1 << TOV0) | (1 << OCF0A);
    TIMSK = (uint8_t)((TIMSK & (uint8_t)~(1 << OCIE0A)) | (1 << TOIE0));
    clock_units += (uint16_t)(c + ((due && c < TICK_COUNTS / 2) ? TICK_COUNTS : 0));
    idle = 1;
    return 1;
}

/* IDLE mode: the slow clock. Its only other job is to wake the main loop. */
ISR(TIM0_OVF_vect)
{
    clock_units += IDLE_TICK_UNITS;
}

#ifndef NO_TRIM
/* The first byte after a quiet line, received by watching the pin rather than by the tick, so that its
 * edges are timed to one Timer0 count (8 CPU cycles, 1 % of a tick): the node trims its clock from the
 * SOF (0xA5) that starts every frame (docs/node_fw.md "Clock trim"). Runs in the pin-change interrupt
 * right after the tick restarted (TCNT0 = WAKE_TCNT about WAKE_LATENCY_CYCLES after the start edge),
 * interrupts off, for one byte time; the line was quiet, so there is nothing to transmit meanwhile.
 *
 * Times are Timer0 counts since the restart: TCNT0 plus TICK_COUNTS per wrap. The byte is delivered to
 * the RX queue as the tick would have delivered it. SOF: seven edges R1 F2 R3 F4 R6 F7 R8 (bit numbers,
 * the start bit is 0); R6 5/7 of the way from R1 to R8 and F7 5 bits after F2, within 1/8 bit: then the span (R8 - R1) + (F7 - F2), 12 bit times of the upstream clock, goes to
 * softuart_sof(). Same-type edges only, so a coupler's rise/fall skew cancels. */
#define BIT_COUNTS ((uint16_t)(TICKS_PER_BIT * TICK_COUNTS))
#define START_COUNTS ((int16_t)WAKE_TCNT - (int16_t)(WAKE_LATENCY_CYCLES / TIMER_PRESCALE))
#define MAX_EDGES 8

static uint8_t near(uint16_t d, uint8_t bits, uint16_t t7)
{
    /* d is `bits` bit times of a period measured as t7 over 7 bits, within 1/8 bit (16-bit: t7 is
     * at most ~1800 counts even at 16.5 MHz with the clock 17 % off) */
    int16_t x = (int16_t)(7 * d - bits * t7);
    if (x < 0) {
        x = (int16_t)-x;
    }
    return (uint16_t)x <= (t7 >> 3);
}

static void sof_poll(void)
{
    uint16_t e[MAX_EDGES];
    uint8_t n = 0, level = 0; /* RX's bit as read (0 or 1 << RX_PIN) */
    uint8_t prev = TCNT0;
    uint16_t base = 0, t;
    uint16_t stop_at = (uint16_t)(START_COUNTS + BIT_COUNTS * 19 / 2); /* mid stop bit, nominal */
    for (;;) {
        /* Wait for the pin to change in a tight loop that reads TCNT0 and the pin together on every
         * pass, so an edge is stamped with the count read one cycle before the pin showed it. Nothing
         * else runs in the loop but the wrap, once a tick (a 16-bit add and the stop check, ~10
         * cycles): an edge is stamped late only if it falls in that short window. Until firmware 1.2
         * the count was read after a 6-pass pin loop and a ~35-cycle body: whether an edge fell in
         * the body depended on the node's clock against its neighbour's, so each node's span read
         * long or short by up to ~2 counts (simavr), and its trim passed that on down the ring. */
        uint8_t c, l;
        for (;;) {
            c = TCNT0;
            l = PINB & (1 << RX_PIN);
            if (c < prev) {
                base += TICK_COUNTS;
                /* the stop bit's middle, to within half a tick either side (checked once a tick): the byte
                 * is over. Leaving on time matters: at power-on, before the trim, the next byte's start bit
                 * may follow at once, and the tick must catch it */
                if ((int16_t)(base + c + TICK_COUNTS / 2 - stop_at) >= 0) {
                    prev = c;
                    goto done;
                }
            }
            prev = c;
            if (l != level) {
                break;
            }
        }
        t = base + c;
        level = l;
        if (n < MAX_EDGES) {
            e[n] = t;
        }
        n++;
        if (e[0] < (uint16_t)(START_COUNTS + BIT_COUNTS / 2)) {
            goto done; /* high again before the middle of the start bit: a glitch */
        }
        if (n == 7) {
            /* a SOF's last edge (R8): its stop bit is 1.5 bits further, at the measured rate */
            uint16_t t7 = t - e[0]; /* 7 bit times: 1.5 bits is 3/14 of it, ~ 1/4 - 1/32 */
            stop_at = (uint16_t)(t + (t7 >> 2) - (t7 >> 5));
        } else if (n == 8) {
            stop_at = (uint16_t)(START_COUNTS + BIT_COUNTS * 19 / 2);
        }
    }
done:;
    /* The ticks that passed are counted here, not by the interrupt (whose flag is pending): clear the
     * flag and let the tick run on from where it is (writing TCNT0 back also keeps simavr 1.6's
     * compare model in step, which otherwise skips the next few matches after a long poll of TCNT0;
     * the timer itself is already in TICK mode, leave_idle() set it). */
    uint8_t c = TCNT0;
    if (c < prev) {
        base += TICK_COUNTS; /* wrapped after the last read */
    }
    TCNT0 = c;
    TIFR = (1 << OCF0A) | (1 << TOV0);
    clock_units += base;
    rx_active = 0;
    if (n && e[0] < (uint16_t)(START_COUNTS + BIT_COUNTS / 2)) {
        return; /* a glitch: no byte */
    }
    /* Only a SOF is delivered: the line was quiet, so the node is hunting for one, and the protocol
     * would discard any other byte (noise) anyway. A SOF whose edges do not pass the check is lost
     * like one hit by noise, and counted downstream. */
    if (n != 7 || !near(e[4] - e[0], 5, e[6] - e[0]) || !near(e[5] - e[1], 5, e[6] - e[0])) {
        return;
    }
    uint8_t b = PROTO_SOF_BYTE, fe = !level;
    softuart_sof((uint16_t)((e[6] - e[0]) + (e[5] - e[1])));
    uint8_t next = (uint8_t)((rx_tail + 1) % RX_QUEUE_SIZE);
    if (next != rx_head) {
        rx_q[rx_tail] = b;
        rx_fe[rx_tail] = fe;
        rx_tail = next;
    }
}
#endif

/* IDLE mode: the RX line changed, almost certainly a start bit's falling edge. Back to TICK mode with
 * the first tick about half a tick after the edge (board.h): the RX state machine then samples the
 * start bit and every data bit as it always does (without the trim), or sof_poll() receives the byte
 * and times its edges. A glitch that is gone by then costs only the tick's running until the main
 * loop stops it again. */
ISR(PCINT0_vect)
{
    if (idle) {
        leave_idle(WAKE_TCNT);
#ifndef NO_TRIM
        sof_poll();
#endif
    }
}

/* The TX level for this tick, decided by the previous one (bit 7: drive, bit 0: level) */
static uint8_t tx_out;

ISR(TIM0_COMPA_vect)
{
    /* RX first: its sample time matters most */
    uint8_t level = PINB & (1 << RX_PIN);
#ifndef NO_TRIM
    /* The length of the tick now running (TCNT0 is a few counts past the match; CTC's OCR0A is not
     * buffered, so this sets where this very tick ends): the dither, so that on average the tick is
     * the upstream neighbour's to ~0.05 % (docs/node_fw.md "Clock trim"). */
    {
        /* a Bresenham accumulator in [0, TRIM_DITHER_ONE): one count more each time it overflows,
         * one less each time it underflows */
        int8_t a = (int8_t)(dither_acc + softuart_dither);
        uint8_t o = TICK_OCR;
        if (a >= TRIM_DITHER_ONE) {
            a -= TRIM_DITHER_ONE;
            o++;
        } else if (a < 0) {
            a += TRIM_DITHER_ONE;
            o--;
        }
        dither_acc = a;
        OCR0A = o;
    }
#endif
    /* Then the TX edge, decided one tick ahead, at a fixed timer count after the tick (TX_EDGE_COUNTS):
     * the interrupt's entry is late by however long the main loop had interrupts off (its sleep check,
     * up to ~30 cycles), and downstream nodes trim their clocks to these edges. A SOF whose last
     * rising edge came 20 cycles late read as a 0.3 % slower clock in simavr, and the ring slowed down
     * by that at every hop. */
    if (tx_out) {
        while (TCNT0 < TX_EDGE_COUNTS) {
        }
        if (tx_out & 1) {
            PORTB |= (1 << TX_PIN);
        } else {
            PORTB &= (uint8_t)~(1 << TX_PIN);
        }
        tx_out = 0;
    }
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
            tx_out = (uint8_t)(0x80 | (tx_shift & 1));
            tx_shift >>= 1;
            tx_bit++;
        } else if (tx_bit == 8) {
            tx_out = 0x81; /* stop bit */
            tx_bit = 9;
        } else {
            tx_busy = 0; /* stop bit done; the next byte can start on this very tick */
            tx_phase = 0;
        }
    }
    if (!tx_busy && !tx_phase && tx_head != tx_tail) {
        tx_shift = tx_fifo[tx_head];
        tx_head = (uint8_t)((tx_head + 1) % TX_FIFO_SIZE);
        tx_out = 0x80; /* start bit, on the next tick */
        tx_bit = 0;
        tx_busy = 1;
        tx_phase = TICKS_PER_BIT - 1;
    }
    clock_units += TICK_COUNTS;
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
