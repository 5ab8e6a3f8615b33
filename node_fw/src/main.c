/* Pack Monitor node: measures its pack and forwards ring frames (docs/protocol.md).
 *
 * The main loop, top to bottom: take received bytes through the protocol; abandon a frame that went
 * silent; between frames, measure, store settings, blink; keep time; sleep until the next interrupt.
 * All timing-critical work happens in the soft UART's interrupts. */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>

#include "adc.h"
#include "board.h"
#include "protocol.h"
#include "settings.h"
#include "softuart.h"

#define MEASURE_EVERY ((uint16_t)(TICKS_PER_SECOND / 5UL)) /* 5 measurements a second */
#define BLINK_EVERY ((uint16_t)(TICKS_PER_SECOND / 8UL))   /* LED toggles at 8 Hz: 4 blinks/s */
#define IDENTIFY_TOGGLES 40                                     /* 5 seconds */
#define HOUSEKEEPING_TICKS 32 /* 0.83 ms: ADC polling, timeouts, EEPROM, LED, uptime */

static node_t node;

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
    uint8_t s = SREG;
    cli(); /* the protocol reads these between bytes; keep each update whole */
    node.mv = mv;
    node.temp = t;
    node.flags = flags;
    SREG = s;
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

    DDRB |= (1 << LED_PIN) | (1 << NTC_SUPPLY_PIN);
    softuart_init();
    proto_reset();
    wdt_enable(WDTO_1S);
    set_sleep_mode(SLEEP_MODE_IDLE);
    sei();

    uint16_t last = softuart_ticks();
    uint16_t last_rx = last, last_measure = last - MEASURE_EVERY, last_blink = last;
    uint16_t sub_second = 0;
    uint8_t blinks = 0;
    adc_sums_t sums;

    for (;;) {
        wdt_reset();
        uint8_t b = 0, fe = 0;
        while (softuart_get(&b, &fe)) {
            proto_rx(&node, b, fe);
            last_rx = softuart_ticks();
        }
        uint16_t now = softuart_ticks();

        if (proto_in_frame()) {
            if ((uint16_t)(now - last_rx) > RX_TIMEOUT_TICKS) {
                proto_timeout(&node);
            }
        } else {
            if (!adc_busy() && (uint16_t)(now - last_measure) >= MEASURE_EVERY) {
                last_measure = now;
                adc_start(node.settings.sensor);
            }
            if (node.settings_written) {
                node.settings_written = 0;
                settings_begin_store(&node.settings);
            }
            if (node.identify) {
                node.identify = 0;
                blinks = IDENTIFY_TOGGLES;
                last_blink = now;
            }
        }
        if (adc_poll(&sums)) {
            use_measurement(&sums);
        }
        settings_store_step();
        if (blinks && (uint16_t)(now - last_blink) >= BLINK_EVERY) {
            last_blink = now;
            PINB = (1 << LED_PIN); /* writing PINB toggles: atomic, unlike PORTB ^= (the TX interrupt writes PORTB) */
            if (--blinks == 0) {
                PORTB &= (uint8_t)~(1 << LED_PIN);
            }
        }
        sub_second += (uint16_t)(now - last);
        last = now;
        while (sub_second >= TICKS_PER_SECOND) {
            sub_second -= TICKS_PER_SECOND;
            node.uptime++;
        }

        /* Sleep until a byte has arrived or it is time for the housekeeping above. Every UART tick
         * wakes the CPU, but only for this check, so the node sleeps most of the time. */
        for (;;) {
            cli();
            if (softuart_rx_pending() || (uint16_t)(softuart_ticks() - now) >= HOUSEKEEPING_TICKS) {
                sei();
                break;
            }
            sleep_enable();
            sei(); /* the instruction after sei runs before any interrupt: no lost wake-up */
            sleep_cpu();
            sleep_disable();
        }
    }
}
