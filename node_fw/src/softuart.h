/* Full-duplex bit-banged UART on the ring pins (the ATtiny85 has no UART; its USI is not used so
 * the same image runs in simavr, which has no USI model). 9600 8N1 on a 4x-baud Timer0 tick, which
 * stops while the ring is quiet; Timer0 is also the node's clock (board.h). */
#ifndef SOFTUART_H
#define SOFTUART_H
#include <stdint.h>

#define TX_FIFO_SIZE 32 /* absorbs a downstream clock up to ~6 % slower over a 64-slot frame */
#define RX_QUEUE_SIZE 8 /* bytes waiting for the main loop; it takes one per ~1 ms at most */

void softuart_init(void);
uint8_t softuart_put(uint8_t b);                      /* 0 if the TX FIFO is full */
uint8_t softuart_get(uint8_t *b, uint8_t *framing_error); /* 1 if a byte was waiting */
uint8_t softuart_tx_idle(void);
uint16_t softuart_clock(void); /* CLOCK_HZ units a second in either mode; never runs backwards; wraps (board.h) */
uint8_t softuart_rx_pending(void); /* call with interrupts off */
/* Stop the tick if nothing is being received, queued or sent, and wait for the next start bit with
 * the pin-change interrupt; the clock goes on at the IDLE rate. Call with interrupts off, only between
 * frames (the frame timeout needs the tick). Returns 1 if the tick is (now) stopped. */
uint8_t softuart_idle(void);
/* Provided by the caller (main.c): the first byte after a quiet line was a SOF whose edges spanned
 * `span` Timer0 counts over 12 of its bit times. Called from the pin-change interrupt before the byte
 * is forwarded, with one byte time (0.5 bit) to spare before the next start bit. */
void softuart_sof(uint16_t span);
/* The tick's dither (the clock trim below one OSCCAL step, docs/node_fw.md "Clock trim"): a signed
 * fraction of a Timer0 count, in 1/TRIM_DITHER_ONE (trim.h), that every tick adds to its length on
 * average (|d| < TRIM_DITHER_ONE). Set by the main
 * loop (one byte: atomic); 0: every tick TICK_COUNTS. */
extern volatile int8_t softuart_dither;
#define PROTO_SOF_BYTE 0xA5

#endif
