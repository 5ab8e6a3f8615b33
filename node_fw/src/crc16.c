#include "crc16.h"

uint16_t crc16(const uint8_t *data, uint16_t len)
{
    uint16_t crc = CRC16_INIT;
    while (len--) {
        crc = crc16_update(crc, *data++);
    }
    return crc;
}
