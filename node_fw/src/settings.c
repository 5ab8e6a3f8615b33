#include <string.h>

#include "settings.h"
#include "crc16.h"

#ifdef __AVR__
#include <avr/eeprom.h>
#endif

void settings_defaults(settings_t *s)
{
    s->vref = VREF_DEFAULT;
    s->temp_offset = 0;
    s->sensor = SENSOR_INTERNAL;
    s->flags = 0;
    s->reserved = 0;
}

uint8_t settings_valid(const settings_t *s)
{
    return s->vref >= 9000 && s->vref <= 13000 && s->temp_offset >= -500 && s->temp_offset <= 500 &&
           s->sensor <= SENSOR_NTC && (s->flags & (uint8_t)~SETTINGS_CALIBRATED) == 0 && s->reserved == 0;
}

__attribute__((noinline)) void bytes_copy(void *dst, const void *src, uint8_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
}

/* The struct is the record: little-endian, no padding (protocol.c checks the layout). */
void settings_pack(const settings_t *s, uint8_t out[SETTINGS_SIZE])
{
    bytes_copy(out, s, SETTINGS_SIZE);
}

void settings_unpack(const uint8_t in[SETTINGS_SIZE], settings_t *s)
{
    bytes_copy(s, in, SETTINGS_SIZE);
}

void settings_to_image(const settings_t *s, uint8_t img[SETTINGS_IMAGE_SIZE])
{
    img[0] = SETTINGS_VERSION;
    settings_pack(s, &img[1]);
    uint16_t crc = crc16(img, 1 + SETTINGS_SIZE);
    img[1 + SETTINGS_SIZE] = (uint8_t)(crc >> 8);
    img[2 + SETTINGS_SIZE] = (uint8_t)crc;
}

uint8_t settings_from_image(const uint8_t img[SETTINGS_IMAGE_SIZE], settings_t *s)
{
    if (img[0] == SETTINGS_VERSION && crc16(img, SETTINGS_IMAGE_SIZE) == 0) {
        settings_unpack(&img[1], s);
        if (settings_valid(s)) {
            return 1;
        }
    }
    settings_defaults(s);
    return 0;
}

#ifdef __AVR__
#define SETTINGS_EEPROM_ADDR ((void *)0)

uint8_t settings_load(settings_t *s)
{
    uint8_t img[SETTINGS_IMAGE_SIZE];
    eeprom_read_block(img, SETTINGS_EEPROM_ADDR, sizeof img);
    return settings_from_image(img, s);
}

/* The image is written one byte per call, only when the EEPROM is idle (a byte takes ~3.4 ms):
 * a write never blocks the main loop, so forwarding goes on while settings are stored. */
static uint8_t image[SETTINGS_IMAGE_SIZE];
static uint8_t store_pos = SETTINGS_IMAGE_SIZE;

void settings_begin_store(const settings_t *s)
{
    settings_to_image(s, image);
    store_pos = 0;
}

void settings_store_step(void)
{
    if (store_pos < SETTINGS_IMAGE_SIZE && eeprom_is_ready()) {
        /* update: unchanged bytes are not rewritten, sparing EEPROM wear */
        eeprom_update_byte((uint8_t *)SETTINGS_EEPROM_ADDR + store_pos, image[store_pos]);
        store_pos++;
    }
}
#endif
