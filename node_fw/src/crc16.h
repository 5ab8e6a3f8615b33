/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), docs/protocol.md section 2. */
#ifndef CRC16_H
#define CRC16_H
#include <stdint.h>

#define CRC16_INIT 0xFFFFu

/* One copy for the protocol and the settings image (inlined, LTO made two: 34 bytes of flash). */
uint16_t crc16_update(uint16_t crc, uint8_t byte);
uint16_t crc16(const uint8_t *data, uint16_t len);

#endif
