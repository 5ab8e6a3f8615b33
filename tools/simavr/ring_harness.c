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
 *   GLITCH us       the hub's line goes low for us microseconds, then high again (noise on an idle line)
 *   TX hex maxms [k] send the bytes (byte k, 0-based, with a low stop bit: a framing error), run until the line has been quiet for 8 byte times after the
 *                   last byte (or maxms); answers "RX hex seconds framing_errors hops" where seconds
 *                   runs from the first start bit sent to the last stop bit received (or to the end of
 *                   TX), and hops lists the bytes on every wire of the ring during this TX: the hub's
 *                   TX, then each node's TX in ring order ("17,17,17"; removed nodes left out)
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

/* usage: ring_harness node.elf N [f_cpu]: f_cpu (Hz) overrides the ELF's clock (the firmware carries
 * no .mmcu section, so without it the cores run at 8 MHz), e.g. 16500000 for the Digispark build. */

#define MAX_NODES 64
#define BAUD 9600
#define QUANTUM 16 /* cycles: 2 us at 8 MHz, 2 % of a bit: the lockstep granularity */

typedef struct {
    uint8_t log[1024]; /* bytes decoded during the current TX (WIRES command) */
    int log_len;
    int level;       /* current line level */
    int busy;        /* decoding a byte */
    uint64_t start;  /* cycle of the start edge */
    int bit;         /* next bit to sample: 0 = start, 1..8 data, 9 stop */
    uint8_t shift;
    uint32_t bytes;
    uint32_t framing;
    uint32_t bytes_at_tx; /* bytes when the current TX command began */
} decoder_t;

static avr_t *core[MAX_NODES];
static int active[MAX_NODES];
static int n_nodes;
static uint64_t now;             /* global simulated time in cycles */
static uint64_t run_cycles_of[MAX_NODES]; /* cycles simulated while in the ring (removed: not run) */
static uint64_t sleep_cycles[MAX_NODES];
static uint32_t led_edges[MAX_NODES]; /* level changes of PB1 (the LED) */
static decoder_t wire[MAX_NODES]; /* node k's TX line */
static avr_irq_t *rx_irq[MAX_NODES];
static int broken;
static int trace_node = -1;
static uint64_t trace_t[8192];
static uint8_t trace_v[8192];
static int trace_n;
static uint32_t freq = 8000000;
static uint32_t bit_cycles;

/* hub receiver */
static uint8_t rx_buf[4096];
static int rx_len;
static int rx_framing;
static uint64_t rx_last_stop;
static uint64_t last_edge; /* last edge seen at the hub */

/* hub transmitter */
static uint8_t tx_buf[4096];
static int tx_len;
static uint64_t tx_start;
static int hub_level = 1;
static int tx_framing_at = -1; /* this byte of the TX is sent with a low stop bit (a framing error) */
static int tx_gap_at = -1;      /* the TX pauses before this byte ... */
static uint64_t tx_gap;         /* ... for this many cycles (GAP) */
static int hub_hold_low;        /* GLITCH: the hub's line is held low */

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

/* ATtiny85 data-space addresses (I/O + 0x20) */
#define PINB_ADDR 0x36
#define PCMSK_ADDR 0x35
#define GIMSK_ADDR 0x5B
#define GIMSK_INT0 (1u << 6)
#define GIMSK_PCIE (1u << 5)
#define RX_BIT (1u << 2) /* PB2 */

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
    d->level = level;
    if (k == trace_node && trace_n < 8192) {
        trace_t[trace_n] = core[k]->cycle;
        trace_v[trace_n++] = (uint8_t)level;
    }
    if (!active[k]) {
        return;
    }
    if (!d->busy && level == 0) {
        d->busy = 1;
        d->start = core[k]->cycle;
        d->bit = 0;
    }
    if (k == last_active()) {
        last_edge = core[k]->cycle; /* the hub's RX: decoded from this wire by decode_wires() */
    } else {
        drive(next_active(k), level);
    }
}

static void dbg_pin_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    int k = (int)(intptr_t)param;
    if (k == trace_node && trace_n < 8192) {
        trace_t[trace_n] = core[k]->cycle;
        trace_v[trace_n++] = 2; /* a debug toggle: an RX interrupt ran */
    }
}

static void led_changed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    led_edges[(int)(intptr_t)param]++;
}

static void hub_edge_trace(int level)
{
    if (trace_node == 0 && trace_n < 8192) {
        trace_t[trace_n] = now;
        trace_v[trace_n++] = (uint8_t)(4 + level); /* the hub's TX into node 1 */
    }
}

/* sample the decoders whose sample point has passed */
static void decode_wires(void)
{
    int last = last_active();
    for (int k = 0; k < n_nodes; k++) {
        decoder_t *d = &wire[k];
        while (d->busy) {
            uint64_t at = d->start + (uint64_t)bit_cycles * (uint64_t)d->bit + bit_cycles / 2;
            if (at > now) {
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
                if (k == last && !broken && rx_len < (int)sizeof rx_buf) {
                    rx_buf[rx_len++] = d->shift;
                    if (!level) {
                        rx_framing++;
                    }
                    rx_last_stop = d->start + (uint64_t)bit_cycles * 10;
                }
                break;
            }
            d->bit++;
        }
    }
}

static void hub_tx_update(void)
{
    int level = !hub_hold_low;
    if (tx_len > 0 && now >= tx_start) {
        uint64_t t = (now - tx_start);
        uint64_t gap_from = tx_gap_at >= 0 ? (uint64_t)tx_gap_at * 10 * bit_cycles : UINT64_MAX;
        if (t >= gap_from) {
            if (t < gap_from + tx_gap) {
                t = UINT64_MAX; /* in the gap: idle */
            } else {
                t -= tx_gap;
            }
        }
        uint64_t byte = t == UINT64_MAX ? UINT64_MAX : t / (10ULL * bit_cycles);
        if (byte < (uint64_t)tx_len) {
            int bit = (int)((t / bit_cycles) % 10);
            if (bit == 0) {
                level = 0;
            } else if (bit <= 8) {
                level = (tx_buf[byte] >> (bit - 1)) & 1;
            } else if ((int)byte == tx_framing_at) {
                level = 0;
            }
        }
    }
    if (level != hub_level) {
        hub_level = level;
        hub_edge_trace(level);
        drive(first_active(), level);
    }
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

static void step(void)
{
    now += QUANTUM;
    hub_tx_update();
    for (int k = 0; k < n_nodes; k++) {
        avr_t *a = core[k];
        if (!active[k]) {
            a->cycle = now; /* a removed node is not run */
            continue;
        }
        while (a->cycle < now) {
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
    decode_wires();
}

static void run_cycles(uint64_t cycles)
{
    uint64_t end = now + cycles;
    while (now < end) {
        step();
    }
}

static void set_vcc(int i, uint32_t mv)
{
    core[i]->vcc = mv;
    core[i]->avcc = mv;
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
    core[i]->cycle = now;
    avr_cycle_timer_register(core[i], QUANTUM, wake_tick, NULL);
    /* the RX line keeps its level across the node's reset */
    int prev = next_active(-1) == i ? hub_level : 1;
    for (int j = i - 1; j >= 0; j--) {
        if (active[j]) {
            prev = wire[j].level;
            break;
        }
    }
    /* simavr's port reset clears PINB but keeps the pin IRQ's cached level, so raising the same
     * level again would be ignored: toggle it so the pin really reads the line's level */
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
    tx_framing_at = framing_at;
    tx_len = 0;
    for (const char *p = hex; p[0] && p[1] && tx_len < (int)sizeof tx_buf; p += 2) {
        int h = hexval(p[0]), l = hexval(p[1]);
        if (h < 0 || l < 0) {
            break;
        }
        tx_buf[tx_len++] = (uint8_t)(h * 16 + l);
    }
    rx_len = 0;
    rx_framing = 0;
    for (int k = 0; k < n_nodes; k++) {
        wire[k].log_len = 0;
        wire[k].bytes_at_tx = wire[k].bytes;
    }
    trace_n = 0;
    rx_last_stop = 0;
    tx_start = now + QUANTUM;
    last_edge = tx_start;
    uint64_t tx_end = tx_start + (uint64_t)tx_len * 10 * bit_cycles + (tx_gap_at >= 0 ? tx_gap : 0);
    uint64_t quiet = 30ULL * 10 * bit_cycles;
    uint64_t limit = tx_start + (uint64_t)(maxms * 1e-3 * freq);
    int hops = 0;
    for (int k = 0; k < n_nodes; k++) {
        hops += active[k];
    }
    /* nothing at the hub yet: wait for the frame to cross every hop (~3 byte times each) */
    uint64_t first_due = tx_end + (uint64_t)(4 * hops) * 10 * bit_cycles + quiet;
    for (;;) {
        step();
        int decoding = wire[last_active() >= 0 ? last_active() : 0].busy;
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
    printf("RX ");
    for (int i = 0; i < rx_len; i++) {
        printf("%02x", rx_buf[i]);
    }
    uint64_t end = rx_len ? rx_last_stop : tx_end;
    printf("%s %.9f %d %d", rx_len ? "" : "-", (double)(end - tx_start) / freq, rx_framing, tx_len_sent);
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
    bit_cycles = (freq + BAUD / 2) / BAUD;
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
        set_vcc(k, 3300);
        avr_cycle_timer_register(a, QUANTUM, wake_tick, NULL);
        active[k] = 1;
        wire[k].level = 1;
        rx_irq[k] = avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN2);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN0), tx_pin_changed,
                                (void *)(intptr_t)k);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN4), dbg_pin_changed,
                                (void *)(intptr_t)k);
        avr_irq_register_notify(avr_io_getirq(a, AVR_IOCTL_IOPORT_GETIRQ('B'), IOPORT_IRQ_PIN1), led_changed,
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
        } else if (!strcmp(cmd, "GLITCH") && sscanf(line, "%*s %lf", &x) == 1 && x > 0) {
            hub_hold_low = 1; /* hub_tx_update() makes the edges, on the lockstep's quanta */
            run_cycles((uint64_t)(x * 1e-6 * freq + 0.5));
            hub_hold_low = 0;
            run_cycles(QUANTUM);
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
                    printf(" %llu:%u", (unsigned long long)(trace_t[j] - tx_start), trace_v[j]);
                }
                printf("\n");
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
