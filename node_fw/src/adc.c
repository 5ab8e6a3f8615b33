#include "adc.h"
#include "protocol.h" /* TEMP_NONE */
#include "settings.h"

#ifdef __AVR__
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include "board.h"
#define PROGMEM_IF_AVR PROGMEM
#define TABLE(i) pgm_read_word(&ntc_table[i])
#else
#define PROGMEM_IF_AVR
#define TABLE(i) ntc_table[i]
#endif
#include "ntc_table.h"

uint16_t adc_vcc_mv(uint16_t vbg_sum, uint16_t vref_01mv)
{
    if (vbg_sum == 0) {
        return 0;
    }
    uint32_t num = 16384UL * vref_01mv + 5UL * vbg_sum;
    uint32_t mv = num / (10UL * vbg_sum);
    if (mv < ADC_VCC_MIN_MV || mv > ADC_VCC_MAX_MV) {
        return 0;
    }
    return (uint16_t)mv;
}

int16_t adc_internal_temp_dc(uint16_t sum)
{
    if (sum < 16u * 180u || sum > 16u * 450u) {
        return TEMP_NONE;
    }
    /* 0.1 C: 250 + (sum/16 - 300) * 650/70 = 250 + (sum - 4800) * 650 / 1120, rounded half away from
     * zero; unsigned, so the image needs no signed 32-bit division */
    uint16_t u = sum >= 4800u ? sum - 4800u : 4800u - sum;
    int16_t m = (int16_t)(((uint32_t)u * 650u + 560u) / 1120u);
    return (int16_t)(sum >= 4800u ? 250 + m : 250 - m);
}

int16_t adc_tmp36_dc(uint16_t sum, uint16_t vcc_mv)
{
    if (vcc_mv == 0 || sum >= 16u * 1020u) {
        return TEMP_NONE;
    }
    int32_t v_mv = ((int32_t)sum * vcc_mv + 8192) / 16384;
    if (v_mv < 50) {
        return TEMP_NONE; /* the TMP36 gives 100 mV at -40 C: less is a short or no sensor */
    }
    return (int16_t)(v_mv - 500); /* 10 mV per C = 1 mV per 0.1 C */
}

int16_t adc_ntc_dc(uint16_t sum)
{
    if (sum > TABLE(0) || sum < TABLE(NTC_POINTS - 1)) {
        return TEMP_NONE; /* open, shorted, or outside -30..100 C */
    }
    uint8_t i = 0;
    while (i < NTC_POINTS - 2 && sum < TABLE(i + 1)) {
        i++;
    }
    uint16_t hi = TABLE(i), lo = TABLE(i + 1);
    /* lo <= sum <= hi, and (hi - lo) * NTC_STEP_DC < 65536 in this table: 16-bit unsigned, rounded */
    return (int16_t)(NTC_T0_DC + NTC_STEP_DC * i +
                     (uint16_t)((uint16_t)(hi - sum) * NTC_STEP_DC + (uint16_t)(hi - lo) / 2) / (uint16_t)(hi - lo));
}

int16_t adc_apply_offset(int16_t t, int16_t offset)
{
    return t == TEMP_NONE ? TEMP_NONE : (int16_t)(t + offset);
}

#ifdef __AVR__
/* ADMUX: REFS1 REFS0 ADLAR REFS2 MUX3..0 */
#define MUX_VBG_VS_VCC 0x0C                         /* bandgap, Vcc reference */
#define MUX_TEMP_1V1 ((1 << REFS1) | 0x0F)          /* ADC4 temperature, internal 1.1 V */
#define MUX_EXT_VS_VCC (EXT_SENSOR_MUX)             /* ADC2, Vcc reference */
#define DISCARD 2 /* conversions thrown away after switching reference or input: they have not settled */

static uint8_t phase;   /* 0 idle, 1 bandgap, 2 temperature */
static uint8_t count;   /* conversions done in this phase, discards included */
static uint8_t sensor_sel;
static uint16_t sum;
static uint16_t vbg_sum;

static void begin_phase(uint8_t mux)
{
    ADMUX = mux;
    count = 0;
    sum = 0;
    ADCSRA |= (1 << ADSC);
}

/* The conversion-complete interrupt only wakes the CPU: with the UART tick stopped between frames
 * nothing else would until the next ~8 ms clock overflow, and a measurement is 36 conversions. The
 * main loop sees the finished conversion (adc_ready) and takes it in adc_poll. */
EMPTY_INTERRUPT(ADC_vect);

void adc_start(uint8_t sensor)
{
    sensor_sel = sensor;
    ADCSRA = 0; /* a snapshot's start aborts a conversion under way: the cycle begins now */
    /* enabled only while measuring: saves ~0.3 mA */
    ADCSRA = (1 << ADEN) | (1 << ADIE) | ADC_PRESCALER_BITS;
    phase = 1;
    begin_phase(MUX_VBG_VS_VCC);
}

uint8_t adc_busy(void)
{
    return phase != 0;
}

uint8_t adc_ready(void)
{
    return phase != 0 && !(ADCSRA & (1 << ADSC));
}

uint8_t adc_poll(adc_sums_t *out)
{
    if (!adc_ready()) {
        return 0;
    }
    uint16_t v = ADC;
    if (++count > DISCARD) {
        sum += v;
    }
    if (count < DISCARD + ADC_SAMPLES) {
        ADCSRA |= (1 << ADSC);
        return 0;
    }
    if (phase == 1) {
        vbg_sum = sum;
        phase = 2;
        if (sensor_sel == SENSOR_INTERNAL) {
            begin_phase(MUX_TEMP_1V1);
        } else {
            if (sensor_sel == SENSOR_NTC) {
                DDRB |= (1 << NTC_SUPPLY_PIN);
                PORTB |= (1 << NTC_SUPPLY_PIN);
            }
            begin_phase(MUX_EXT_VS_VCC);
        }
        return 0;
    }
    /* PB3 back to an input (high impedance): on a Digispark it carries the USB D- pull-up (1.5 kOhm
     * to Vcc), which would draw Vcc / 1.5 kOhm (2-2.8 mA) from the pack all the time from a low output */
    PORTB &= (uint8_t)~(1 << NTC_SUPPLY_PIN);
    DDRB &= (uint8_t)~(1 << NTC_SUPPLY_PIN);
    ADCSRA = 0;
    phase = 0;
    out->vbg_sum = vbg_sum;
    out->temp_sum = sum;
    return 1;
}
#endif
