/* Pack Monitor node: measures its pack and forwards ring frames (docs/protocol.md).
 *
 * The main loop, top to bottom: take received bytes through the protocol; abandon a frame that went
 * silent; between frames, measure, store settings, blink; keep time; sleep until the next interrupt.
 * All timing-critical work happens in the soft UART's interrupts. Between frames the UART tick is
 * stopped (softuart_idle) and the CPU sleeps until the ~8 ms clock overflow, an ADC conversion or the
 * next start bit. */
#include <avr/eeprom.h>
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <string.h>

#include "adc.h"
#include "board.h"
#include "protocol.h"
#include "settings.h"
#include "softuart.h"
#include "trim.h"

/* Times in clock units (board.h: CLOCK_HZ a second). Between frames the loop runs once per clock
 * overflow (~8 ms), so measurements and blinks are due at the first pass after their time; their
 * schedules advance by whole periods so the rates stay exact on average. */
#define MEASURE_EVERY ((uint32_t)(CLOCK_HZ / 5UL)) /* 5 measurements a second */
#define BLINK_EVERY ((uint32_t)(CLOCK_HZ / 8UL))   /* LED toggles at 8 Hz: 4 blinks/s */
#define IDENTIFY_TOGGLES 40                          /* 5 seconds */
/* A hop, from a byte's start bit coming in to its start bit going out, is ~11.5 of the node's own bit
 * times: 46 of its ticks (docs/protocol.md 5). A node whose tick is off the hub's by e makes the frame
 * reach every node after it 46 e ticks late or early: it adds its hop, so corrected, to a SNAP's ELAPSED
 * (section 3.5). A SNAP's SOF to its last byte is SNAP_FRAME_TICKS of the hub's crystal; on the node's
 * clock, SNAP_SPAN0 units at the hub's rate. */
#define SNAP_HOP_TICKS 46
#define SNAP_SPAN0 ((uint32_t)SNAP_FRAME_TICKS * TICK_COUNTS)
/* ELAPSED's units (1/256 tick) per 8 clock units that the span is short of SNAP_SPAN0, times 32 */
#define SNAP_DEV_MUL ((int16_t)((SNAP_HOP_TICKS * 256L * 256L + SNAP_SPAN0 / 2) / SNAP_SPAN0))

static node_t node;

/* ---- clock trim (docs/node_fw.md "Clock trim"; the logic is trim.c) ---------------------------- */
/* EEPROM: a start value for OSCCAL, after the settings image: magic, value, ~value */
#define TRIM_EE_ADDR ((uint8_t *)16)
#define TRIM_EE_MAGIC 0xC5
#define TRIM_STORE_FIRST_S 60UL      /* no store in the first minute after a start */
#define TRIM_STORE_EVERY_S 21600UL   /* then at most every 6 hours: ~1500 writes in a year at worst */

#ifndef NO_TRIM
static uint8_t trim_ee_load(void)
{
    uint8_t m = eeprom_read_byte(TRIM_EE_ADDR), v = eeprom_read_byte(TRIM_EE_ADDR + 1),
            c = eeprom_read_byte(TRIM_EE_ADDR + 2);
    return (m == TRIM_EE_MAGIC && (uint8_t)(v ^ c) == 0xFF) ? v : 0xFF;
}

/* Walk OSCCAL to the trim's target one LSB a write (at most ~1.5 %, at the bottom of the low range;
 * the datasheet: "A variation in frequency of more than 2 % from one cycle to the next can lead to
 * unpredictable behavior"), a few cycles apart. Never across bit 7: the two ranges overlap (0x7F is
 * faster than 0x80), and trim.c keeps the range. */
static void osccal_walk(uint8_t target)
{
    uint8_t cal = OSCCAL;
    while (cal != target) {
        cal = (uint8_t)(cal < target ? cal + 1 : cal - 1);
        OSCCAL = cal;
        __builtin_avr_delay_cycles(8);
    }
}

/* The SOF's measurement arrives in the pin-change interrupt; the trim runs in the main loop (its
 * division would otherwise hold up the next byte's start bit), right after the SOF is queued for
 * forwarding (main loop). */
static volatile uint16_t sof_span;

void softuart_sof(uint16_t span)
{
    sof_span = span;
}

static void trim_pending_sof(void)
{
    uint8_t s = SREG;
    cli();
    uint16_t span = sof_span;
    sof_span = 0;
    SREG = s;
    if (span && trim_sof(&node.trim, span)) {
        osccal_walk(node.trim.osccal);
    }
    softuart_dither = node.trim.dither;
}
#endif

/* MCUSR must be read and cleared, and the watchdog stopped, before anything else: after a watchdog
 * reset the watchdog stays armed with its shortest timeout (avr-libc's wdt.h recipe). */
uint8_t mcusr_at_start __attribute__((section(".noinit")));
void early_init(void) __attribute__((naked, used, section(".init3")));
void early_init(void)
{
    mcusr_at_start = MCUSR;
    MCUSR = 0;
    wdt_disable();
}

uint8_t proto_emit(uint8_t b)
{
    return softuart_put(b);
}

static uint8_t reset_flags(uint8_t mcusr)
{
    if (mcusr & (1 << WDRF)) {
        return FLAG_RESET_WATCHDOG;
    }
    if (mcusr & (1 << BORF)) {
        return FLAG_RESET_BROWNOUT;
    }
    return FLAG_RESET_POWER; /* power-on, external, or unknown: the node started afresh */
}

static void use_measurement(const adc_sums_t *m)
{
    uint16_t mv = adc_vcc_mv(m->vbg_sum, node.settings.vref);
    int16_t t;
    if (node.settings.sensor == SENSOR_TMP36) {
        t = adc_tmp36_dc(m->temp_sum, mv);
    } else if (node.settings.sensor == SENSOR_NTC) {
        t = adc_ntc_dc(m->temp_sum);
    } else {
        t = adc_internal_temp_dc(m->temp_sum);
    }
    t = adc_apply_offset(t, node.settings.temp_offset);
    uint8_t flags = node.flags & (uint8_t)~(FLAG_VOLTAGE_FAULT | FLAG_SENSOR_FAULT);
    if (mv == 0) {
        flags |= FLAG_VOLTAGE_FAULT;
    }
    if (t == TEMP_NONE) {
        flags |= FLAG_SENSOR_FAULT;
    }
    /* the protocol runs in this loop too (proto_rx), never in an interrupt: no need to lock */
    node.mv = mv;
    node.temp = t;
    node.flags = flags;
    if (node.snap == SNAP_MEASURING) {
        bytes_copy(&node.snap_flags, &node.flags, 6); /* flags, mv, temp, bad: the SNAPREAD record's layout */
        node.snap = SNAP_READY;
    }
}

int main(void)
{
    uint8_t have_settings = settings_load(&node.settings);
    node.reset_cause = mcusr_at_start & 0x0F;
    node.flags = reset_flags(mcusr_at_start);
    if (!have_settings || !(node.settings.flags & SETTINGS_CALIBRATED)) {
        node.flags |= FLAG_NOT_CALIBRATED;
    }
    node.temp = TEMP_NONE;
#if F_CPU == 8250000UL
    /* Digispark at half speed: micronucleus hands over with the 16.5 MHz PLL clock, which the speed
     * grade allows only above ~3.9 V (10 MHz at 2.7 V, 20 MHz at 4.5 V); 8.25 MHz is in spec down to
     * 2.7 V, the brown-out level. The timed CLKPR sequence, interrupts still off. */
    CLKPR = (1 << CLKPCE);
    CLKPR = (1 << CLKPS0);
#endif
#ifdef NO_TRIM
    trim_init(&node.trim, OSCCAL, 0xFF);
    node.trim.state = TRIM_OFF;
#else
    trim_init(&node.trim, OSCCAL, trim_ee_load());
    osccal_walk(node.trim.osccal);
#endif

    DDRB |= (1 << LED_PIN); /* PB3 (NTC supply) is an output only while the NTC is measured (adc.c) */
    /* Idle current: the node sleeps most of the time, so switch off what it never uses. The analog
     * comparator (on by default); Timer1 and the USI clocks; PB4's and PB3's digital input buffers,
     * which sit at mid-rail with a TMP36 or NTC on them (or float without one) and then draw current. */
    ACSR = (1 << ACD);
    PRR = (1 << PRTIM1) | (1 << PRUSI);
    DIDR0 = (1 << ADC2D) | (1 << ADC3D); /* PB3 too: an input that may sit mid-rail or float */
    softuart_init();
    proto_reset();
    wdt_enable(WDTO_1S);
    set_sleep_mode(SLEEP_MODE_IDLE);
    sei();

    uint16_t last = softuart_clock();
    uint16_t last_rx = last;
    uint32_t time = 0; /* clock units since start, wrapping (every 71 min at 8 MHz): differences only */
    uint32_t last_measure = 0 - MEASURE_EVERY, last_blink = 0;
    uint32_t second_at = 0; /* when uptime last counted a second */
    uint16_t sof_at = 0; /* when this frame's SOF came in */
    uint8_t blinks = 0;
    adc_sums_t sums;
#ifndef NO_TRIM
    uint16_t trim_store_at = TRIM_STORE_FIRST_S; /* uptime's low 16 bits (6 h apart: no ambiguity) */
    uint8_t trim_ee_pos = 3; /* 0..2: the byte of the trim's EEPROM record to write next */
    uint8_t trim_ee[3];
#endif

    for (;;) {
        wdt_reset();
        uint8_t b = 0, fe = 0;
        while (softuart_get(&b, &fe)) {
            uint8_t was_in_frame = proto_in_frame();
            proto_rx(&node, b, fe);
            if (!was_in_frame) {
                /* a SOF (or noise before one): a SNAP's span is timed from here, as every byte, when the
                 * tick took its stop bit (before the trim's arithmetic, longer at some nodes than others) */
                sof_at = softuart_clock();
            }
#ifndef NO_TRIM
            /* Right after the SOF is queued, ~1-2 ticks before its start edge goes out. Forwarding comes
             * first, because every cycle before proto_emit is on the hop's latency (no lag since firmware
             * 1.3), and the trim's arithmetic (a few hundred cycles locked, a 32-bit division while
             * acquiring) crossed a tick boundary or not depending on the clocks: the hops varied by up to a
             * tick each, and a 64-pack snapshot spread 3.7-10 ms instead of under 1 (docs/protocol.md
             * section 5). A locked node's new dither is in place before the SOF's first edge all the same;
             * an acquisition step (power-on) may land in the SOF's first bits, which can cost the first
             * frame after power-on. */
            trim_pending_sof();
#endif
            last_rx = softuart_clock();
        }
        /* The 16-bit clock wraps every 65536 units (>= 32 ms); this loop runs at least once per
         * IDLE overflow (<= 8 ms), so extending it here never misses a wrap. */
        uint16_t now = softuart_clock();
        uint16_t step = (uint16_t)(now - last);
        last = now;
        time += step;
        if (time - second_at >= CLOCK_HZ) {
            second_at += CLOCK_HZ; /* the loop runs at least every ~8 ms: never two seconds at once */
            node.uptime++;
        }

#ifndef NO_TRIM
        if (node.frame_end) {
            /* tracking: a good frame may move the trim by one LSB; a bad one never moves it (interrupts
             * stay on: the frame's last bytes are still going out, and only the main loop touches the trim) */
            if (trim_frame_end(&node.trim, node.frame_end == 1)) {
                osccal_walk(node.trim.osccal);
            }
            node.frame_end = 0;
            if (node.trim.state & TRIM_LIMIT) {
                node.flags |= FLAG_CLOCK_FAULT;
            } else {
                node.flags &= (uint8_t)~FLAG_CLOCK_FAULT;
            }
        }
        /* the tick's dither, as the frame's end left it (a SOF's is set by trim_pending_sof, right after
         * the SOF is queued) */
        softuart_dither = node.trim.dither;
#else
        node.frame_end = 0;
#endif
        if (node.snap == SNAP_REQUESTED) {
            /* A SNAP ended at this node just now (in the bytes taken above): sample snap_wait ticks later.
             * The measurement schedule does it: its next start is moved to that instant (and the
             * regular ones follow on from there). */
            /* The wait, on the clock the frame was timed on: the hub sent it with two stop bits, so every
             * node forwards each byte as it arrives and the crystal's spacing reaches every node (section
             * 3.5), while the node's own clock walks with its neighbours' by up to a few %. SOF to last
             * byte is SNAP_SPAN0 units at the hub's rate, give or take those few %, so the 16-bit clock's
             * difference tells the span (it wraps every 32-65 ms), to a tick at each end of 83 ms: ~0.05 %.
             * (DELAY <= 16384: 32 bits hold the product.) */
            int16_t off = (int16_t)((uint16_t)(last_rx - sof_at) - (uint16_t)SNAP_SPAN0);
            last_measure = time + (SNAP_SPAN0 + off) * node.snap_wait / SNAP_FRAME_TICKS - MEASURE_EVERY;
            /* this hop's deviation, for the next SNAP's ELAPSED: 46 ticks times the tick's error, in 1/256
             * tick (an eighth of the span's offset times the scale: 16 bits hold it) */
            node.snap_dev = (int16_t)((off >> 3) * -SNAP_DEV_MUL >> 5);
            node.snap = SNAP_WAITING;
        }
        uint8_t in_frame = proto_in_frame();
        if (in_frame) {
            /* the tick runs throughout a frame (softuart_idle is not called), so the clock is fine-grained */
            if ((uint16_t)(now - last_rx) > RX_TIMEOUT_UNITS) {
                proto_timeout(&node);
                in_frame = 0;
            }
        } else {
            /* signed: a snapshot's instant may be more than a period ahead. A snapshot does not wait for a
             * regular measurement still under way: adc_start aborts it. */
            if ((!adc_busy() || node.snap == SNAP_WAITING) &&
                (int32_t)(time - last_measure) >= (int32_t)MEASURE_EVERY) {
                last_measure += MEASURE_EVERY;
                if ((int32_t)(time - last_measure) >= (int32_t)MEASURE_EVERY) {
                    last_measure = time; /* fell behind (a long run of frames): no catching up */
                }
                adc_start(node.settings.sensor);
                if (node.snap == SNAP_WAITING) {
                    node.snap = SNAP_MEASURING;
                }
            }
            if (node.settings_written) {
                node.settings_written = 0;
                settings_begin_store(&node.settings);
            }
#ifndef NO_TRIM
            /* the trimmed OSCCAL as the next start value: once locked, when it moved by 2 LSB or more,
             * rate-limited (EEPROM endurance 100,000 writes) */
            if (trim_ee_pos == 3 && (int16_t)((uint16_t)node.uptime - trim_store_at) >= 0 && trim_store_wanted(&node.trim)) {
                trim_ee[0] = TRIM_EE_MAGIC;
                trim_ee[1] = node.trim.osccal;
                trim_ee[2] = (uint8_t)~node.trim.osccal;
                trim_ee_pos = 0;
                trim_store_at = (uint16_t)node.uptime + TRIM_STORE_EVERY_S;
            }
            if (trim_ee_pos < 3 && eeprom_is_ready()) {
                eeprom_update_byte(TRIM_EE_ADDR + trim_ee_pos, trim_ee[trim_ee_pos]);
                if (++trim_ee_pos == 3) {
                    node.trim.ee_value = trim_ee[1];
                    node.trim.ee_writes++;
                }
            }
#endif
            if (node.identify) {
                node.identify = 0;
                blinks = IDENTIFY_TOGGLES;
                last_blink = time;
            }
        }
        /* Measurement steps only between frames: in a frame the TX has no slack (each byte leaves as
         * soon as it has arrived), so the ~2300 cycles of use_measurement would delay the rest of
         * the frame. A measurement under way waits, its last conversion in the ADC, until the frame ends. */
        if (!in_frame && adc_poll(&sums)) {
            use_measurement(&sums);
        }
        settings_store_step();
        if (blinks && time - last_blink >= BLINK_EVERY) {
            last_blink += BLINK_EVERY;
            PINB = (1 << LED_PIN); /* writing PINB toggles: atomic, unlike PORTB ^= (the TX interrupt writes PORTB) */
            if (--blinks == 0) {
                PORTB &= (uint8_t)~(1 << LED_PIN);
            }
        }

        /* Sleep until a byte has arrived, an ADC conversion is done, or it is time for the
         * housekeeping above. In TICK mode every tick wakes the CPU, but only for this check. Between
         * frames the tick is stopped as soon as the UART has nothing left to do; then the CPU sleeps
         * until the clock's overflow (which advances the clock by more than HOUSEKEEPING_UNITS), the
         * ADC, or a start bit (which restarts the tick). */
        /* Waiting for a snapshot's instant the loop does not sleep: it passes every few microseconds and
         * starts the sample within one clock tick of the instant (the idle clock's ~8 ms steps would be
         * far too coarse, and the tick mode is only restarted by a start bit). At most DELAY (~0.2 s
         * at 64 packs) awake per snapshot. */
        uint16_t pace = node.snap == SNAP_WAITING ? 0 : HOUSEKEEPING_UNITS;
        for (;;) {
            cli();
            if (softuart_rx_pending() || (!in_frame && adc_ready()) ||
                (uint16_t)(softuart_clock() - now) >= pace) {
                sei();
                break;
            }
            if (!in_frame) {
                softuart_idle();
            }
            sleep_enable();
            sei(); /* the instruction after sei runs before any interrupt: no lost wake-up */
            sleep_cpu();
            sleep_disable();
        }
    }
}
