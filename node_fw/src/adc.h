/* Pack voltage and temperature. The conversions (pure integer math, host-tested) are separate from
 * the ADC sequencing (AVR only). */
#ifndef ADC_H
#define ADC_H
#include <stdint.h>

#define ADC_SAMPLES 16 /* 16 x 10-bit = 12-bit oversampled sum */
#define ADC_VCC_MIN_MV 1800
#define ADC_VCC_MAX_MV 5500

/* Vcc from the sum of 16 readings of the bandgap against Vcc: Vcc = 16384 * Vbg / sum. 0 = implausible. */
uint16_t adc_vcc_mv(uint16_t vbg_sum, uint16_t vref_01mv);
/* Internal sensor (ADC4, 1.1 V reference), datasheet's typical line: 230 LSB at -40 C, 300 at 25 C,
 * 370 at 85 C, i.e. T = 25 C + (adc - 300) * 65/70 C. TEMP_NONE when implausible. */
int16_t adc_internal_temp_dc(uint16_t sum);
/* TMP36 on ADC2 against Vcc: 10 mV/C, 500 mV at 0 C. */
int16_t adc_tmp36_dc(uint16_t sum, uint16_t vcc_mv);
/* NTC 10k B3950 to GND with 10k to Vcc on ADC2, by table (ntc_table.h) and linear interpolation. */
int16_t adc_ntc_dc(uint16_t sum);
int16_t adc_apply_offset(int16_t t, int16_t offset);

#ifdef __AVR__
typedef struct {
    uint16_t vbg_sum;
    uint16_t temp_sum;
} adc_sums_t;
void adc_start(uint8_t sensor); /* begin one measurement cycle (non-blocking; its steps wake the CPU) */
uint8_t adc_busy(void);
uint8_t adc_ready(void); /* a conversion has finished: adc_poll() has work to do */
uint8_t adc_poll(adc_sums_t *out); /* call often; 1 when a cycle has just completed */
#endif

#endif
