/* A ring of N ATtiny85 nodes running the real node firmware in simavr, in lockstep simulated time.
 *
 *   hub TX --> node 1 PB2 (RX) ... node k PB0 (TX) --> node k+1 PB2 ... node N PB0 --> hub RX
 *
 * The hub's side is played by this harness: it bit-bangs the hub's bytes into node 1 at 9600 8N1 and
 * decodes node N's output. It is driven by line commands on stdin and answers on stdout:
 *
 *   VCC i mV        pack voltage of node i (0-based): the node's Vcc
 *   TEMPMV i mV     voltage of node i's internal temperature sensor (ADC4) as simavr takes it
 *   RESET i [cause] node i restarts (RAM lost, EEPROM kept); cause por (default), ext, bor or wdt sets
 *                   PORF, EXTRF, BORF or WDRF in its MCUSR as the chip's reset logic would
 *   REMOVE i        node i is taken out of the ring (the ring is closed around it)
 *   INSERT i        node i is put back
 *   PINS irq|auto   how RX levels reach a node: always through simavr's pin IRQ, or (default) written
 *                   into PINB while the firmware has neither INT0 nor PCINT2 enabled (see drive())
 *   BREAK 0|1       the ring is open (nothing reaches the hub) or closed
 *   RUN ms          let simulated time pass with an idle line
 *   GAP pos bits    the next TX pauses (line idle high) for bits bit times before its byte pos (0-based),
 *                   e.g. to space two frames sent in one TX exactly
 *   STOP 1|2        the next TX's bytes carry this many stop bits (2: 11 bit times a byte, as the hub sends
 *                   a SNAP, docs/protocol.md 3.5)
 *   GLITCH us       the hub's line goes low for us microseconds, then high again (noise on an idle line)
 *   TX hex maxms [k] send the bytes (byte k, 0-based, with a low stop bit: a framing error), run until the line has been quiet for 8 byte times after the
 *                   last byte (or maxms); answers "RX hex seconds framing_errors hops" where seconds
 *                   runs from the first start bit sent to the last stop bit received (or to the end of
 *                   TX), and hops lists the bytes on every wire of the ring during this TX: the hub's
 *                   TX, then each node's TX in ring order ("17,17,17"; removed nodes left out)
 *   CLOCK i ppm [slope [osccal0]]  node i's clock error at its reset OSCCAL (3 V, 25 C), its OSCCAL
 *                   slope against the typical curve, its reset OSCCAL (the node restarts to load it)
 *   DRIFT kv kt     the clocks' drift in ppm per volt above 3 V and per degree C above 25 C
 *   TEMPC i degC    node i's die temperature (for the drift)
 *   EDGE hop rise_us fall_us  the coupler delays of a hop (0: the hub's TX into the first node;
 *                   k: node k-1's TX, 0-based k-1, into the next node or the hub)
 *   FREQ            "FREQ n swallowed" then per node "i hz osccal osccal_writes max_step_ppm clkps"
 *   FIFO size head tail  data addresses of the firmware's TX FIFO indices; HWM: each node's high-water
 *                   mark since the last HWM
 *   PEEK i addr n   n bytes of node i's data space
 *   ADCT n          "ADCT N" then per node "i count t..." : the start times of node i's last n (<= 64) ADC
 *                   conversions (simavr raises ADC_IRQ_OUT_TRIGGER when the firmware sets ADSC), in
 *                   seconds of hub time from the start of the last TX, oldest first; count: all
 *                   conversions since the harness started (the snapshot spread: packmon bench --snapshot)
 *   STATS           "STATS n" then per node "i cycles sleep_cycles bytes_out framing_out active led"
 *                   (cycles simulated while in the ring and those asleep (cpu_Sleeping), since the
 *                   harness started; bytes_out and framing_out
 *                   count the bytes decoded on the node's TX wire and those with a low stop bit;
 *                   led counts the level changes of the node's LED pin, PB1)
 *   QUIT
 * Errors are answered "ERR text". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simavr/avr_ioport.h>
#include <simavr/avr_adc.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>

/* usage: ring_harness node.elf N [f_cpu [src_hz [osccal0]]]: f_cpu (Hz) is the image's nominal clock
 * (the firmware carries no .mmcu section, so without it 8 MHz), against which the hub's baud is timed;
 * src_hz the clock source before CLKPR (16500000 for the Digispark image built at 8250000, which
 * halves it at start); osccal0 the OSCCAL value the chips load at reset (default 0x48). */

#define MAX_NODES 64
#define BAUD 9600
#define QUANTUM 16 /* nominal cycles: 2 us at 8 MHz, 2 % of a bit: the lockstep granularity */
#define SUB 1024ULL /* global time: 1/SUB of a nominal cycle (1/f_nominal), so edges and clocks keep their fractions */
#define QUEUE 65536 /* edges in flight on one wire: the hub queues a whole TX (4096 bytes) at once */

/* ATtiny85 data-space addresses (I/O + 0x20) */
#define PINB_ADDR 0x36
#define PCMSK_ADDR 0x35
#define GIMSK_ADDR 0x5B
#define OSCCAL_ADDR 0x51 /* I/O 0x31 */
#define CLKPR_ADDR 0x46  /* I/O 0x26 */
#define GIMSK_INT0 (1u << 6)
#define GIMSK_PCIE (1u << 5)
#define RX_BIT (1u << 2) /* PB2 */

/* A byte decoder on one line, as a crystal UART sees it: start edge, sample mid-bit at the nominal
 * baud, stop bit. Fed with level changes in time order (decoder_edge) and advanced to a time
 * (decoder_advance), so it samples at the exact moments whatever the lockstep quantum. */
typedef struct {
    uint8_t log[1024]; /* bytes decoded during the current TX (WIRES command) */
    int log_len;
    int level;       /* current line level */
    int busy;        /* decoding a byte */
    uint64_t start;  /* time of the start edge */
    int bit;         /* next bit to sample: 0 = start, 1..8 data, 9 stop */
    uint8_t shift;
    uint32_t bytes;
    uint32_t framing;
    uint32_t bytes_at_tx; /* bytes when the current TX command began */
    int hub;         /* this decoder is the hub's receiver */
} decoder_t;

/* Each node's clock. Its frequency follows the chip: the nominal clock times the node's factory error,
 * the OSCCAL curve (osc_curve) relative to the factory value, the drift with Vcc and temperature, and
 * the system clock prescaler (CLKPR). Node cycles map to global time piecewise linearly: c0 at t0. */
typedef struct {
    double ratio;       /* node cycles per nominal cycle now */
    uint64_t c0, t0;    /* t0 in global time units */
    double err;         /* factory error at the reset OSCCAL, 3 V, 25 C (fraction) */
    double slope;       /* this chip's OSCCAL slope relative to the typical curve */
    uint8_t osccal0;    /* the value the chip loads at reset */
    uint8_t osccal;
    uint8_t clkps;
    int clkpce;         /* CLKPCE written: the next write may change CLKPS */
    double vcc;         /* V */
    double temp;        /* degC */
    uint32_t osccal_writes;
    double max_step;    /* largest relative frequency change of one OSCCAL write */
} clk_t;

typedef struct {
    uint64_t t[QUEUE];
    uint8_t v[QUEUE];
    int head, n;
    uint64_t last; /* arrival of the last edge queued or delivered */
} queue_t;

static avr_t *core[MAX_NODES];
static int active[MAX_NODES];
static int n_nodes;
static uint64_t now;             /* global simulated time, SUB units per nominal cycle */
static uint64_t run_cycles_of[MAX_NODES]; /* cycles simulated while in the ring (removed: not run) */
static uint64_t sleep_cycles[MAX_NODES];
static uint32_t led_edges[MAX_NODES]; /* level changes of PB1 (the LED) */
static decoder_t wire[MAX_NODES]; /* node k's TX line, at the node's pin */
static decoder_t hub_rx;          /* the hub's receiver, after the last hop's coupler */
static avr_irq_t *rx_irq[MAX_NODES];
static clk_t clk[MAX_NODES];
static queue_t inq[MAX_NODES];    /* edges on their way to node k's RX */
static queue_t hubq;              /* edges on their way to the hub's RX */
static int rx_level[MAX_NODES];   /* the level at node k's RX now */
/* coupler delays per hop, SUB units: hop 0 is the hub's TX into the first node, hop k+1 node k's TX */
static uint64_t delay_rise[MAX_NODES + 1], delay_fall[MAX_NODES + 1];
static uint32_t swallowed;
/* the firmware's TX FIFO indices in data space (FIFO command, from the ELF's symbols): occupancy is
 * sampled every quantum and its high-water mark kept per node (HWM) */
static uint16_t fifo_head_addr, fifo_tail_addr;
static uint8_t fifo_size;
static uint8_t fifo_hwm[MAX_NODES];       /* pulses shorter than a coupler's delay difference, lost */
static int broken;
static int trace_node = -1;
static uint64_t trace_t[8192];
static uint8_t trace_v[8192];
static int trace_n;
static uint32_t freq = 8000000;  /* the image's nominal clock (F_CPU): the hub's baud is timed against it */
static uint32_t src_freq;        /* the clock source before CLKPR (the Digispark's PLL: 16.5 MHz) */
static uint32_t bit_cycles;
static double bit_t;             /* one bit at the hub's (crystal) baud, global units */
static double kv = 0;            /* frequency change per volt above 3 V (DRIFT; 0: ideal clocks) */
static double kt = 0;            /* per degree C above 25 C */

/* hub receiver */
static uint8_t rx_buf[4096];
static int rx_len;
static int rx_framing;
static uint64_t rx_last_stop;
static uint64_t last_edge; /* last edge seen at the hub */

/* hub transmitter */
static int tx_len;
static uint64_t tx_start;
static int tx_framing_at = -1; /* this byte of the TX is sent with a low stop bit (a framing error) */
static int tx_stop = 1;         /* stop bits of the hub's bytes in the next TX (STOP 2: SNAP, protocol.md 3.5) */
static int tx_gap_at = -1;      /* the TX pauses before this byte ... */
static uint64_t tx_gap;         /* ... for this many cycles (GAP) */
static int hub_level = 1;

static int next_active(int k)
{
    for (int j = k + 1; j < n_nodes; j++) {
        if (active[j]) {
            return j;
        }
    }
    return -1;
}

static int first_active(void)
{
    return next_active(-1);
}

static int last_active(void)
{
    for (int j = n_nodes - 1; j >= 0; j--) {
        if (active[j]) {
            return j;
        }
    }
    return -1;
}

/* ---- clocks ------------------------------------------------------------------------------------ */

/* The ATtiny85's calibrated RC oscillator against OSCCAL, typical chip at 3 V, 25 C (datasheet: two
 * ranges selected by bit 7, each spanning about 2:1 (table "Internal RC Oscillator Frequency Range":
 * 0x00 50-100 %, 0x7F 100-200 % of nominal), overlapping so that 0x7F is faster than 0x80; under 2 %
 * per step around 8 MHz). Approximated as two straight lines, MHz: 3.9 .. 11.1 and 7.4 .. 16.3. A
 * chip's own slope is this times clk.slope. */
static double osc_curve(uint8_t v, double slope)
{
    double c = (double)(v & 0x7F) / 127.0;
    return (v & 0x80) ? 7.4 * (1.0 + 1.2 * slope * c) : 3.9 * (1.0 + 1.85 * slope * c);
}

static double clk_ratio(const clk_t *c)
{
    double osc = osc_curve(c->osccal, c->slope) / osc_curve(c->osccal0, c->slope);
    double drift = 1.0 + kv * (c->vcc - 3.0) + kt * (c->temp - 25.0);
    return (double)src_freq / (double)freq * (1.0 + c->err) * osc * drift / (double)(1u << c->clkps);
}

static uint64_t cycle_at(int k, uint64_t t)
{
    const clk_t *c = &clk[k];
    return c->c0 + (uint64_t)((double)(t - c->t0) * c->ratio / (double)SUB);
}

static uint64_t time_of(int k, uint64_t cycle)
{
    const clk_t *c = &clk[k];
    if (cycle <= c->c0) {
        return c->t0;
    }
    return c->t0 + (uint64_t)((double)(cycle - c->c0) * (double)SUB / c->ratio);
}

/* the node's clock changed: keep its past, run at the new rate from its current cycle */
static void clk_update(int k)
{
    clk_t *c = &clk[k];
    uint64_t cyc = core[k]->cycle;
    uint64_t t = time_of(k, cyc);
    double r = clk_ratio(c);
    c->c0 = cyc;
    c->t0 = t < now ? t : now;
    c->ratio = r;
}

static void osccal_write(struct avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    int k = (int)(intptr_t)param;
    avr->data[addr] = v;
    clk_t *c = &clk[k];
    double before = osc_curve(c->osccal, c->slope);
    double step = osc_curve(v, c->slope) / before - 1.0;
    if (step < 0) {
        step = -step;
    }
    if (step > c->max_step) {
        c->max_step = step;
    }
    c->osccal = v;
    c->osccal_writes++;
    if (getenv("OSCDBG")) fprintf(stderr, "W k=%d v=%u at %.3f bits\n", k, v, (double)(time_of(k, avr->cycle) - tx_start) / SUB / bit_cycles);
    clk_update(k);
}

static void clkpr_write(struct avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    int k = (int)(intptr_t)param;
    clk_t *c = &clk[k];
    if (v == 0x80) {
        c->clkpce = 1; /* the change enable (the 4-cycle window is not modelled) */
    } else if (c->clkpce && !(v & 0x80)) {
        c->clkpce = 0;
        c->clkps = v & 0x0F;
        clk_update(k);
    }
    avr->data[addr] = c->clkps;
}

/* a node's chip restarts: OSCCAL back to its factory value, no prescaler */
static void clk_reset(int k)
{
    clk_t *c = &clk[k];
    c->osccal = c->osccal0;
    c->clkps = 0;
    c->clkpce = 0;
    core[k]->data[OSCCAL_ADDR] = c->osccal0;
    core[k]->data[CLKPR_ADDR] = 0;
    clk_update(k);
}

/* ---- wires ------------------------------------------------------------------------------------- */

static int fast_pins = 1;

/* Set node's RX pin (PB2) to level. Raising the pin's IRQ is what a real edge does, but simavr 1.6's
 * INT0 model then polls the pin from a cycle timer for as long as it is low when INT0 is in its
 * (default) level-triggered mode, even with INT0 disabled: that polling costs ~2/3 of the run time
 * while a frame streams through. So when the firmware listens for neither INT0 nor a pin change on
 * PB2 (it samples PINB from its timer tick), the level is written into PINB directly and simavr's
 * cached pin level is kept in step; otherwise the IRQ is raised. */
static void drive(int node, int level)
{
    if (node < 0) {
        return;
    }
    rx_level[node] = level;
    avr_t *a = core[node];
    uint8_t gimsk = a->data[GIMSK_ADDR];
    int edge_wanted = (gimsk & GIMSK_INT0) || ((gimsk & GIMSK_PCIE) && (a->data[PCMSK_ADDR] & RX_BIT));
    if (fast_pins && !edge_wanted) {
        if (level) {
            a->data[PINB_ADDR] |= RX_BIT;
        } else {
            a->data[PINB_ADDR] &= (uint8_t)~RX_BIT;
        }
        rx_irq[node]->value = (uint32_t)level;
    } else {
        avr_raise_irq(rx_irq[node], level);
    }
}

/* An edge at time t on the line of hop `hop` (0: the hub's TX) goes through that hop's coupler: it
 * arrives delay_rise or delay_fall later. A pulse shorter than the difference of the two delays
 * vanishes, as it does in a slow coupler. */
static void queue_edge(queue_t *q, int hop, uint64_t t, int level)
{
    uint64_t at = t + (level ? delay_rise[hop] : delay_fall[hop]);
    if (at <= q->last) {
        if (q->n > 0) {
            q->n--; /* the pulse is swallowed: drop its first edge and do not queue this one */
            q->last = q->n ? q->t[(q->head + q->n - 1) % QUEUE] : q->last;
            swallowed++;
            return;
        }
        at = q->last + 1; /* the first edge was delivered already: this one follows it at once */
    }
    if (q->n == QUEUE) {
        return; /* cannot happen at 9600 baud with delays under a few bit times */
    }
    q->t[(q->head + q->n) % QUEUE] = at;
    q->v[(q->head + q->n) % QUEUE] = (uint8_t)level;
    q->n++;
    q->last = at;
}

static int queue_due(const queue_t *q, uint64_t t)
{
    return q->n > 0 && q->t[q->head] <= t;
}

static void queue_pop(queue_t *q, uint64_t *t, int *level)
{
    *t = q->t[q->head];
    *level = q->v[q->head];
    q->head = (q->head + 1) % QUEUE;
    q->n--;
}

static void decoder_advance(decoder_t *d, uint64_t t)
{
    while (d->busy) {
        uint64_t at = d->start + (uint64_t)(bit_t * ((double)d->bit + 0.5));
        if (at > t) {
            break;
        }
        int level = d->level;
        if (d->bit == 0) {
            if (level) {
                d->busy = 0; /* glitch */
                break;
            }
        } else if (d->bit <= 8) {
            d->shift = (uint8_t)((d->shift >> 1) | (level ? 0x80 : 0));
        } else {
            d->busy = 0;
            d->bytes++;
            d->framing += !level;
            if (d->log_len < (int)sizeof d->log) {
                d->log[d->log_len++] = level ? d->shift : (uint8_t)~d->shift; /* framing: inverted marker */
            }
            if (d->hub && !broken && rx_len < (int)sizeof rx_buf) {
                rx_buf[rx_len++] = d->shift;
                if (!level) {
                    rx_framing++;
                }
                rx_last_stop = d->start + (uint64_t)(bit_t * 10);
            }
            break;
        }
        d->bit++;
    }
}

static void decoder_edge(decoder_t *d, uint64_t t, int level)
{
    decoder_advance(d, t);
    if (level == d->level) {
        return;
    }
    d->level = level;
    if (!d->busy && level == 0) {
        d->busy = 1;
        d->start = t;
        d->bit = 0;
    }
}

/* node k's TX pin changed */
static void tx_pin_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    int k = (int)(intptr_t)param;
    int level = value ? 1 : 0;
    decoder_t *d = &wire[k];
    if (level == d->level) {
        return;
    }
    uint64_t t = time_of(k, core[k]->cycle);
    if (k == trace_node && trace_n < 8192) {
        trace_t[trace_n] = t;
        trace_v[trace_n++] = (uint8_t)level;
    }
    if (!active[k]) {
        d->level = level;
        return;
    }
    decoder_edge(d, t, level);
    if (k == last_active()) {
        queue_edge(&hubq, k + 1, t, level);
    } else {
        int j = next_active(k);
        if (j >= 0) {
            queue_edge(&inq[j], k + 1, t, level);
        }
    }
}

static void dbg_pin_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    int k = (int)(intptr_t)param;
    if (k == trace_node && trace_n < 8192) {
        trace_t[trace_n] = time_of(k, core[k]->cycle);
        trace_v[trace_n++] = 2; /* a debug toggle: an RX interrupt ran */
    }
}

/* ADC conversion starts, global time: a ring of the last ADC_LOG per node (ADCT) */
#define ADC_LOG 64
static uint64_t adc_t[MAX_NODES][ADC_LOG];
static uint32_t adc_n[MAX_NODES];

static void adc_triggered(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    int k = (int)(intptr_t)param;
    adc_t[k][adc_n[k] % ADC_LOG] = time_of(k, core[k]->cycle);
    adc_n[k]++;
}

static void led_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    led_edges[(int)(intptr_t)param]++;
}

/* the hub's TX line changes at t (exact: a crystal UART) */
static void hub_edge(uint64_t t, int level)
{
    if (level == hub_level) {
        return;
    }
    hub_level = level;
    if (trace_node == 0 && trace_n < 8192) {
        trace_t[trace_n] = t;
        trace_v[trace_n++] = (uint8_t)(4 + level); /* the hub's TX into node 1 */
    }
    int j = first_active();
    if (j >= 0) {
        queue_edge(&inq[j], 0, t, level);
    }
}

/* queue the hub's whole transmission as edges, bit boundaries on the hub's (crystal) bit clock */
static void hub_tx_schedule(const uint8_t *buf, int len)
{
    uint64_t bt = (uint64_t)bit_cycles * SUB;
    for (int b = 0; b < len; b++) {
        uint64_t t0 = tx_start + (uint64_t)b * (9 + tx_stop) * bt + (tx_gap_at >= 0 && b >= tx_gap_at ? tx_gap * SUB : 0);
        for (int bit = 0; bit < 10; bit++) {
            int level = bit == 0 ? 0 : bit <= 8 ? (buf[b] >> (bit - 1)) & 1 : b != tx_framing_at;
            hub_edge(t0 + (uint64_t)bit * bt, level);
        }
    }
    hub_edge(tx_start + (uint64_t)len * (9 + tx_stop) * bt - (tx_stop - 1) * bt + (tx_gap_at >= 0 ? tx_gap * SUB : 0), 1);
}

static avr_cycle_count_t wake_tick(avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)avr;
    (void)param;
    return when + QUANTUM; /* bounds how far a sleeping core may jump ahead of the others */
}

static void no_sleep(avr_t *avr, avr_cycle_count_t howLong)
{
    (void)avr;
    (void)howLong; /* simulated time only: never sleep in real time */
}

static void run_to(int k, uint64_t cycle)
{
    avr_t *a = core[k];
    while (a->cycle < cycle) {
        int sleeping = a->state == cpu_Sleeping;
        uint64_t c0 = a->cycle;
        int st = avr_run(a);
        run_cycles_of[k] += a->cycle - c0;
        if (sleeping) {
            sleep_cycles[k] += a->cycle - c0;
        }
        if (st == cpu_Done || st == cpu_Crashed) {
            fprintf(stderr, "node %d stopped (state %d) at cycle %llu\n", k, st, (unsigned long long)a->cycle);
            exit(2);
        }
    }
}

static void step(void)
{
    now += QUANTUM * SUB;
    for (int k = 0; k < n_nodes; k++) {
        if (!active[k]) {
            /* a removed node is not run: its clock stands still */
            clk[k].c0 = core[k]->cycle;
            clk[k].t0 = now;
            while (inq[k].n) {
                uint64_t t;
                int v;
                queue_pop(&inq[k], &t, &v);
            }
            continue;
        }
        /* edges reach the node at their exact time (to the instruction) */
        while (queue_due(&inq[k], now)) {
            uint64_t t;
            int v;
            queue_pop(&inq[k], &t, &v);
            run_to(k, cycle_at(k, t));
            drive(k, v);
        }
        run_to(k, cycle_at(k, now));
    }
    if (fifo_size) {
        for (int k = 0; k < n_nodes; k++) {
            uint8_t occ = (uint8_t)((core[k]->data[fifo_tail_addr] + fifo_size - core[k]->data[fifo_head_addr]) %
                                    fifo_size);
            if (occ > fifo_hwm[k]) {
                fifo_hwm[k] = occ;
            }
        }
    }
    while (queue_due(&hubq, now)) {
        uint64_t t;
        int v;
        queue_pop(&hubq, &t, &v);
        decoder_edge(&hub_rx, t, v);
        last_edge = t;
    }
    decoder_advance(&hub_rx, now);
    for (int k = 0; k < n_nodes; k++) {
        decoder_advance(&wire[k], now);
    }
}

static void run_cycles(uint64_t cycles)
{
    uint64_t end = now + cycles * SUB;
    while (now < end) {
        step();
    }
}

static void set_vcc(int i, uint32_t mv)
{
    core[i]->vcc = mv;
    core[i]->avcc = mv;
    clk[i].vcc = mv / 1000.0;
    clk_update(i);
}

static void set_temp_mv(int i, uint32_t mv)
{
    avr_raise_irq(avr_io_getirq(core[i], AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_TEMP), mv);
}

/* MCUSR bits as the ATtiny85's reset logic sets them (datasheet 8.5.1) */
enum { CAUSE_POR = 0, CAUSE_EXT = 1, CAUSE_BOR = 2, CAUSE_WDT = 3 };
#define MCUSR_DATA_ADDR 0x54 /* I/O 0x34 */

static void reset_node(int i, int cause)
{
    avr_reset(core[i]);
    /* simavr's avr_reset keeps MCUSR as the firmware left it (the node clears it at start), so the
     * restarted firmware would see no cause at all: set the bit the real chip would set. A power-on
     * reset clears the other flags; the others add to what is there. */
    uint8_t mcusr = cause == CAUSE_POR ? 0 : core[i]->data[MCUSR_DATA_ADDR];
    core[i]->data[MCUSR_DATA_ADDR] = (uint8_t)(mcusr | (1u << cause));
    clk[i].c0 = core[i]->cycle;
    clk[i].t0 = now;
    clk_reset(i);
    avr_cycle_timer_register(core[i], QUANTUM, wake_tick, NULL);
    /* simavr's port reset clears PINB but keeps the pin IRQ's cached level, so raising the same
     * level again would be ignored: toggle it so the pin really reads the line's level */
    int prev = rx_level[i];
    drive(i, !prev);
    drive(i, prev);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void cmd_tx(const char *hex, double maxms, int framing_at)
{
    static uint8_t buf[4096];
    tx_framing_at = framing_at;
    tx_len = 0;
    for (const char *p = hex; p[0] && p[1] && tx_len < (int)sizeof buf; p += 2) {
        int h = hexval(p[0]), l = hexval(p[1]);
        if (h < 0 || l < 0) {
            break;
        }
        buf[tx_len++] = (uint8_t)(h * 16 + l);
    }
    rx_len = 0;
    rx_framing = 0;
    for (int k = 0; k < n_nodes; k++) {
        wire[k].log_len = 0;
        wire[k].bytes_at_tx = wire[k].bytes;
    }
    hub_rx.bytes_at_tx = hub_rx.bytes;
    trace_n = 0;
    rx_last_stop = 0;
    tx_start = now + QUANTUM * SUB;
    last_edge = tx_start;
    hub_tx_schedule(buf, tx_len);
    uint64_t tx_end = tx_start + ((uint64_t)tx_len * (9 + tx_stop) * bit_cycles + (tx_gap_at >= 0 ? tx_gap : 0)) * SUB;
    uint64_t quiet = 30ULL * 10 * bit_cycles * SUB;
    uint64_t limit = tx_start + (uint64_t)(maxms * 1e-3 * freq) * SUB;
    int hops = 0;
    for (int k = 0; k < n_nodes; k++) {
        hops += active[k];
    }
    /* nothing at the hub yet: wait for the frame to cross every hop (~3 byte times each) */
    uint64_t first_due = tx_end + (uint64_t)(4 * hops) * 10 * bit_cycles * SUB + quiet;
    for (;;) {
        step();
        int decoding = hub_rx.busy;
        if (now > limit) {
            break;
        }
        if (decoding) {
            continue;
        }
        if (rx_len > 0 ? now > last_edge + quiet && now > tx_end + quiet : now > first_due) {
            break;
        }
    }
    int tx_len_sent = tx_len;
    tx_len = 0;
    tx_gap_at = -1;
    tx_gap = 0;
    tx_stop = 1;
    printf("RX ");
    for (int i = 0; i < rx_len; i++) {
        printf("%02x", rx_buf[i]);
    }
    uint64_t end = rx_len ? rx_last_stop : tx_end;
    printf("%s %.9f %d %d", rx_len ? "" : "-", (double)(end - tx_start) / SUB / freq, rx_framing, tx_len_sent);
    for (int k = 0; k < n_nodes; k++) {
        if (active[k]) {
            printf(",%u", wire[k].bytes - wire[k].bytes_at_tx);
        }
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s node.elf N [f_cpu]\n", argv[0]);
        return 1;
    }
    n_nodes = atoi(argv[2]);
    if (n_nodes < 1 || n_nodes > MAX_NODES) {
        fprintf(stderr, "N must be 1..%d\n", MAX_NODES);
        return 1;
    }
    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(argv[1], &fw) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    if (fw.frequency) {
        freq = fw.frequency;
    }
    if (argc > 3 && atol(argv[3]) > 0) {
        freq = (uint32_t)atol(argv[3]);
    }
    src_freq = freq;
    if (argc > 4 && atol(argv[4]) > 0) {
        src_freq = (uint32_t)atol(argv[4]);
    }
    uint8_t osccal0 = argc > 5 ? (uint8_t)strtol(argv[5], NULL, 0) : 0x48;
    bit_cycles = (freq + BAUD / 2) / BAUD;
    bit_t = (double)bit_cycles * SUB;
    hub_rx.hub = 1;
    hub_rx.level = 1;
    for (int k = 0; k < n_nodes; k++) {
        avr_t *a = avr_make_mcu_by_name("attiny85");
        if (!a) {
            fprintf(stderr, "simavr has no attiny85 core\n");
            return 1;
        }
        avr_init(a);
        a->log = LOG_ERROR;
        avr_load_firmware(a, &fw);
        a->frequency = freq;
        a->sleep = no_sleep;
        core[k] = a;
        clk[k].err = 0;
        clk[k].slope = 1.0;
        clk[k].osccal0 = osccal0;
        clk[k].vcc = 3.3;
        clk[k].temp = 25.0;
        clk[k].c0 = a->cycle;
        clk[k].t0 = 0;
        avr_register_io_write(a, OSCCAL_ADDR, osccal_write, (void *)(intptr_t)k);
        avr_register_io_write(a, CLKPR_ADDR, clkpr_write, (void *)(intptr_t)k);
        clk_reset(k);
        set_vcc(k, 3300);
        avr_cycle_timer_register(a, QUANTUM, wake_tick, NULL);
        active[k] = 1;
        wire[k].level = 1;
        rx_level[k] = 1;
        rx_irq[k] = avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN2);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN0), tx_pin_changed,
                                (void *)(intptr_t)k);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN4), dbg_pin_changed,
                                (void *)(intptr_t)k);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN1), led_changed,
                                (void *)(intptr_t)k);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER), adc_triggered,
                                (void *)(intptr_t)k);
        set_temp_mv(k, 322); /* ~25 C */
    }
    for (int k = 0; k < n_nodes; k++) {
        drive(k, 1);
    }
    run_cycles(freq / 20); /* 50 ms: start-up and a first measurement */
    printf("READY %d %u\n", n_nodes, freq);
    fflush(stdout);

    char line[16384];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16] = {0};
        char arg[8200] = {0};
        double x = 0, y = 0;
        int i = 0;
        if (sscanf(line, "%15s", cmd) != 1) {
            continue;
        }
        if (!strcmp(cmd, "QUIT")) {
            break;
        } else if (!strcmp(cmd, "VCC") && sscanf(line, "%*s %d %lf", &i, &x) == 2 && i >= 0 && i < n_nodes) {
            set_vcc(i, (uint32_t)x);
            printf("OK\n");
        } else if (!strcmp(cmd, "TEMPMV") && sscanf(line, "%*s %d %lf", &i, &x) == 2 && i >= 0 && i < n_nodes) {
            set_temp_mv(i, (uint32_t)(x + 0.5));
            printf("OK\n");
        } else if (!strcmp(cmd, "RESET") && sscanf(line, "%*s %d", &i) == 1 && i >= 0 && i < n_nodes) {
            char how[8] = "por";
            sscanf(line, "%*s %*d %7s", how);
            int cause = !strcmp(how, "por") ? CAUSE_POR
                        : !strcmp(how, "ext") ? CAUSE_EXT
                        : !strcmp(how, "bor") ? CAUSE_BOR
                        : !strcmp(how, "wdt") ? CAUSE_WDT
                                               : -1;
            if (cause < 0) {
                printf("ERR reset cause must be por, ext, bor or wdt\n");
            } else {
                reset_node(i, cause);
                printf("OK\n");
            }
        } else if (!strcmp(cmd, "REMOVE") && sscanf(line, "%*s %d", &i) == 1 && i >= 0 && i < n_nodes) {
            active[i] = 0;
            printf("OK\n");
        } else if (!strcmp(cmd, "INSERT") && sscanf(line, "%*s %d", &i) == 1 && i >= 0 && i < n_nodes) {
            active[i] = 1;
            reset_node(i, CAUSE_POR); /* a node put (back) into the ring is powered up afresh */
            printf("OK\n");
        } else if (!strcmp(cmd, "PINS") && sscanf(line, "%*s %15s", arg) == 1 &&
                   (!strcmp(arg, "irq") || !strcmp(arg, "auto"))) {
            fast_pins = !strcmp(arg, "auto");
            printf("OK\n");
        } else if (!strcmp(cmd, "BREAK") && sscanf(line, "%*s %d", &i) == 1) {
            broken = i;
            printf("OK\n");
        } else if (!strcmp(cmd, "RUN") && sscanf(line, "%*s %lf", &x) == 1) {
            run_cycles((uint64_t)(x * 1e-3 * freq));
            printf("OK\n");
        } else if (!strcmp(cmd, "GAP") && sscanf(line, "%*s %d %lf", &i, &x) == 2 && i >= 0 && x >= 0) {
            tx_gap_at = i;
            tx_gap = (uint64_t)(x * freq / BAUD + 0.5);
            printf("OK\n");
        } else if (!strcmp(cmd, "STOP") && sscanf(line, "%*s %d", &i) == 1 && (i == 1 || i == 2)) {
            tx_stop = i;
            printf("OK\n");
        } else if (!strcmp(cmd, "GLITCH") && sscanf(line, "%*s %lf", &x) == 1 && x > 0) {
            uint64_t len = (uint64_t)(x * 1e-6 * freq + 0.5);
            hub_edge(now + SUB, 0);
            hub_edge(now + SUB + len * SUB, 1);
            run_cycles(len + QUANTUM);
            printf("OK\n");
        } else if (!strcmp(cmd, "TX") && sscanf(line, "%*s %8199s %lf", arg, &y) == 2) {
            int fe = -1;
            sscanf(line, "%*s %*s %*f %d", &fe);
            cmd_tx(arg, y, fe);
        } else if (!strcmp(cmd, "WIRES")) {
            printf("WIRES %d\n", n_nodes);
            for (int k = 0; k < n_nodes; k++) {
                printf("%d ", k);
                for (int j = 0; j < wire[k].log_len; j++) {
                    printf("%02x", wire[k].log[j]);
                }
                printf("\n");
            }
        } else if (!strcmp(cmd, "TRACE") && sscanf(line, "%*s %d", &i) == 1) {
            if (i >= 0) {
                trace_node = i;
                printf("OK\n");
            } else {
                printf("TRACE %d", trace_n);
                for (int j = 0; j < trace_n; j++) {
                    printf(" %llu:%u", (unsigned long long)((trace_t[j] - tx_start) / SUB), trace_v[j]);
                }
                printf("\n");
            }
        } else if (!strcmp(cmd, "CLOCK") && sscanf(line, "%*s %d %lf %lf", &i, &x, &y) >= 2 && i >= 0 &&
                   i < n_nodes) {
            /* CLOCK i err_ppm [slope [osccal0]]: node i's factory error (at its reset OSCCAL, 3 V, 25 C),
             * its OSCCAL slope relative to the typical curve, its reset OSCCAL */
            clk[i].err = x * 1e-6;
            if (sscanf(line, "%*s %*d %*f %lf", &y) == 1 && y > 0.1 && y < 10) {
                clk[i].slope = y;
            }
            int cal;
            if (sscanf(line, "%*s %*d %*f %*f %i", &cal) == 1 && cal >= 0 && cal <= 255) {
                /* this chip's reset OSCCAL (its factory value); the node restarts to load it */
                clk[i].osccal0 = (uint8_t)cal;
                reset_node(i, CAUSE_POR);
            }
            clk_update(i);
            printf("OK\n");
        } else if (!strcmp(cmd, "TEMPC") && sscanf(line, "%*s %d %lf", &i, &x) == 2 && i >= 0 && i < n_nodes) {
            clk[i].temp = x; /* the die temperature, for the oscillator's drift */
            clk_update(i);
            printf("OK\n");
        } else if (!strcmp(cmd, "DRIFT") && sscanf(line, "%*s %lf %lf", &x, &y) == 2) {
            kv = x * 1e-6; /* ppm per volt, ppm per degree C */
            kt = y * 1e-6;
            for (int k = 0; k < n_nodes; k++) {
                clk_update(k);
            }
            printf("OK\n");
        } else if (!strcmp(cmd, "EDGE") && sscanf(line, "%*s %d %lf %lf", &i, &x, &y) == 3 && i >= 0 &&
                   i <= n_nodes && x >= 0 && y >= 0) {
            /* EDGE hop rise_us fall_us: hop 0 is the hub's TX into the first node, hop k+1 node k's TX */
            delay_rise[i] = (uint64_t)(x * 1e-6 * freq * SUB);
            delay_fall[i] = (uint64_t)(y * 1e-6 * freq * SUB);
            printf("OK\n");
        } else if (!strcmp(cmd, "FIFO") && sscanf(line, "%*s %d %lf %lf", &i, &x, &y) == 3 && i > 1 && i <= 255) {
            fifo_size = (uint8_t)i; /* FIFO size head_addr tail_addr */
            fifo_head_addr = (uint16_t)x;
            fifo_tail_addr = (uint16_t)y;
            printf("OK\n");
        } else if (!strcmp(cmd, "ADCT") && sscanf(line, "%*s %d", &i) == 1 && i > 0 && i <= ADC_LOG) {
            printf("ADCT %d\n", n_nodes);
            for (int k = 0; k < n_nodes; k++) {
                uint32_t m = adc_n[k] < (uint32_t)i ? adc_n[k] : (uint32_t)i;
                printf("%d %u", k, adc_n[k]);
                for (uint32_t j = adc_n[k] - m; j < adc_n[k]; j++) {
                    printf(" %.9f", ((double)adc_t[k][j % ADC_LOG] - (double)tx_start) / SUB / freq);
                }
                printf("\n");
            }
        } else if (!strcmp(cmd, "HWM")) {
            /* each node's TX FIFO high-water mark since the last HWM */
            printf("HWM");
            for (int k = 0; k < n_nodes; k++) {
                printf(" %u", fifo_hwm[k]);
                fifo_hwm[k] = 0;
            }
            printf("\n");
        } else if (!strcmp(cmd, "PEEK") && sscanf(line, "%*s %d %lf %lf", &i, &x, &y) == 3 && i >= 0 &&
                   i < n_nodes && x >= 0 && y > 0 && x + y <= 0x260) {
            printf("PEEK"); /* PEEK i addr len: node i's data space, for debugging */
            for (int j = 0; j < (int)y; j++) {
                printf(" %02x", core[i]->data[(int)x + j]);
            }
            printf("\n");
        } else if (!strcmp(cmd, "FREQ")) {
            /* per node: frequency (Hz), OSCCAL, its writes, the largest single OSCCAL step (ppm), CLKPR */
            printf("FREQ %d %u\n", n_nodes, swallowed);
            for (int k = 0; k < n_nodes; k++) {
                printf("%d %.1f %u %u %.0f %u\n", k, clk[k].ratio * freq, clk[k].osccal, clk[k].osccal_writes,
                       clk[k].max_step * 1e6, clk[k].clkps);
            }
        } else if (!strcmp(cmd, "STATS")) {
            printf("STATS %d\n", n_nodes);
            for (int k = 0; k < n_nodes; k++) {
                printf("%d %llu %llu %u %u %d %u\n", k, (unsigned long long)run_cycles_of[k],
                       (unsigned long long)sleep_cycles[k], wire[k].bytes, wire[k].framing, active[k], led_edges[k]);
            }
        } else {
            printf("ERR bad command: %s", line);
        }
        fflush(stdout);
    }
    return 0;
}
