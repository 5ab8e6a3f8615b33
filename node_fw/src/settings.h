/* Per-node settings (docs/protocol.md section 3.3) and their EEPROM image. */
#ifndef SETTINGS_H
#define SETTINGS_H
#include <stdint.h>

#define SETTINGS_SIZE 8
#define SETTINGS_CALIBRATED 0x01
#define SENSOR_INTERNAL 0
#define SENSOR_TMP36 1
#define SENSOR_NTC 2
#define VREF_DEFAULT 11000 /* 1.1000 V in 0.1 mV */

typedef struct {
    uint16_t vref;       /* bandgap voltage, 0.1 mV */
    int16_t temp_offset; /* 0.1 degC */
    uint8_t sensor;
    uint8_t flags;
    uint16_t reserved;
} settings_t;

/* EEPROM image: version byte, the 8-byte record, CRC-16 (big-endian) over version + record.
 * A blank (0xFF) or half-written EEPROM fails the guard and the node runs on defaults. */
#define SETTINGS_VERSION 1
#define SETTINGS_IMAGE_SIZE (1 + SETTINGS_SIZE + 2)

void settings_defaults(settings_t *s);
uint8_t settings_valid(const settings_t *s);
void settings_pack(const settings_t *s, uint8_t out[SETTINGS_SIZE]);
void settings_unpack(const uint8_t in[SETTINGS_SIZE], settings_t *s);
void settings_to_image(const settings_t *s, uint8_t img[SETTINGS_IMAGE_SIZE]);
/* Returns 1 and fills *s if the image is intact and valid; otherwise fills defaults, returns 0. */
uint8_t settings_from_image(const uint8_t img[SETTINGS_IMAGE_SIZE], settings_t *s);

#ifdef __AVR__
uint8_t settings_load(settings_t *s); /* 1 if EEPROM held valid settings */
void settings_begin_store(const settings_t *s); /* non-blocking: */
void settings_store_step(void);                 /* call from the main loop */
#endif

/* memcpy for the records: one copy loop in the image instead of one inlined per call (flash) */
void bytes_copy(void *dst, const void *src, uint8_t n);

#endif
