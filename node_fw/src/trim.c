#include "trim.h"

void trim_init(trim_t *t, uint8_t osccal_now, uint8_t stored)
{
    /* everything 0 but these (a loop: fewer bytes than a store per field) */
    for (uint8_t i = 0; i < sizeof(*t); i++) {
        ((uint8_t *)t)[i] = 0;
    }
    t->osccal = osccal_now;
    t->osccal0 = osccal_now;
    t->ee_value = stored;
    t->pending = TRIM_NONE;
    /* A stored value is a start only if it is in the same range and near the reset value: the
     * EEPROM may hold anything (a blank chip, another firmware's data). */
    if (stored != 0xFF && (stored & 0x80) == (osccal_now & 0x80)) {
        int16_t d = (int16_t)stored - (int16_t)osccal_now;
        if (d >= -40 && d <= 40) {
            t->osccal = stored;
            t->state |= TRIM_EEPROM;
        }
    }
}

/* OSCCAL target down by lsbs (up if negative), clamped to its range (bit 7 kept) */
static void move(trim_t *t, int16_t lsbs)
{
    uint8_t base = t->osccal & 0x80;
    int16_t target = (int16_t)(t->osccal & 0x7F) - lsbs;
    t->state &= (uint8_t)~TRIM_LIMIT;
    if (target < 0) {
        target = 0;
        t->state |= TRIM_LIMIT;
    } else if (target > 127) {
        target = 127;
        t->state |= TRIM_LIMIT;
    }
    t->steps = (uint8_t)(t->steps + (target > (t->osccal & 0x7F) ? target - (t->osccal & 0x7F)
                                                              : (t->osccal & 0x7F) - target));
    t->osccal = (uint8_t)(base | target);
}


static int8_t clamp8(int16_t d)
{
    return (int8_t)(d > TRIM_DITHER_MAX ? TRIM_DITHER_MAX : d < -TRIM_DITHER_MAX ? -TRIM_DITHER_MAX : d);
}

/* sign * mag / b rounded half away from zero, 0 < b < 65536: 32-bit (mag is up to ~150,000 at 16.5 MHz
 * with a 25 % error; the image links the 32-bit division anyway, a 16-bit one would cost its own) */
static int16_t round_div(int16_t sign, uint32_t mag, uint16_t b)
{
    int16_t q = (int16_t)((mag + b / 2) / b);
    return sign < 0 ? (int16_t)-q : q;
}

uint8_t trim_sof(trim_t *t, uint16_t span)
{
    int16_t err = (int16_t)(span - (uint16_t)TRIM_NOMINAL);
    uint16_t mag = (uint16_t)(err < 0 ? -err : err);
    t->pending = TRIM_NONE;
    if (mag > (uint16_t)(TRIM_NOMINAL / TRIM_PLAUSIBLE)) {
        return 0;
    }
    t->pending = err;
    /* 0.1 %: mag * 1000 / NOMINAL as a multiply and the high byte (mag <= NOMINAL / 4: 16 bits),
     * clamped to +-12.7 % */
    uint16_t m01 = (uint16_t)(mag * (uint16_t)(256000UL / (uint16_t)TRIM_NOMINAL) + 128) >> 8;
    if (m01 > 127) {
        m01 = 127;
    }
    t->err01 = (int8_t)(err < 0 ? -(int16_t)m01 : (int16_t)m01);
    t->state |= TRIM_MEASURED;
    t->clean++;
    if (t->state & TRIM_LOCKED) {
        /* tracking: the dither moves now, before the SOF is forwarded, so that the nodes downstream
         * measure the new rate in this same frame; only for this frame until its CRC checks out.
         * Half way from the last good frame's to this SOF's error (the filter: a SOF's +-1 count of
         * noise moves the tick by ~0.05 %). The halving's odd unit is carried to the next SOF rather
         * than dropped: truncating (until firmware 1.2) stopped the filter up to one unit short of
         * 2 err, always towards the node's own OSCCAL clock, so a ring of exact clocks settled 0.16 %
         * fast from its fourth node on (the nominal tick is 832 cycles a bit, the hub's 833.3). */
        int16_t s = (int16_t)(t->filt + 2 * err + t->half);
        t->half_next = (uint8_t)(s & 1);
        t->dither = clamp8(s >> 1); /* a floor: with the carried unit, the mean is exact */
        return 0;
    }
    /* acquisition: the clock must change by -err / (nominal + err) of itself; one LSB at c is
     * 1 / (c + K) of it */
    uint8_t old = t->osccal;
    uint8_t k = (old & 0x80) ? TRIM_K_HIGH : TRIM_K_LOW;
    move(t, round_div(err, (uint32_t)mag * (uint8_t)((old & 0x7F) + k), (uint16_t)(TRIM_NOMINAL + err)));
    return t->osccal != old;
}

uint8_t trim_frame_end(trim_t *t, uint8_t good)
{
    int16_t err = t->pending;
    const int16_t lsb = TRIM_LSB_COUNTS;
    uint8_t old = t->osccal;
    t->pending = TRIM_NONE;
    if (good) {
        t->off_run = 0;
        if (err == TRIM_NONE) {
            return 0;
        }
        int8_t d = t->dither; /* locked: this frame's, from its SOF */
        if (!(t->state & TRIM_LOCKED)) {
            if ((err < 0 ? -err : err) * 2 <= lsb * 3) {
                if (++t->near_run >= TRIM_LOCK_AFTER) {
                    t->state |= TRIM_LOCKED;
                    d = (int8_t)(2 * err); /* the whole residual at once (at most 3 LSB: no clamp) */
                }
            } else {
                t->near_run = 0;
            }
        } else if (d > TRIM_DITHER_LSB) {
            /* OSCCAL moves one LSB only when the dither would need more than one LSB's worth, and
             * the dither gives that much back (hysteresis: the next move is a whole LSB of drift
             * away) */
            move(t, 1);
            d = (int8_t)(d - TRIM_DITHER_LSB);
        } else if (d < -TRIM_DITHER_LSB) {
            move(t, -1);
            d = (int8_t)(d + TRIM_DITHER_LSB);
        } else {
            t->state &= (uint8_t)~TRIM_LIMIT;
        }
        t->dither = t->filt = d;
        t->half = t->half_next;
        return t->osccal != old;
    }
    t->near_run = 0;
    t->dither = t->filt; /* a bad frame's SOF never moves the trim beyond its own frame */
    if (err != TRIM_NONE && (t->state & TRIM_LOCKED) && (err > 2 * lsb || err < -2 * lsb)) {
        int8_t sign = err > 0 ? 1 : -1;
        t->off_run = (uint8_t)(sign == t->off_sign ? t->off_run + 1 : 1);
        t->off_sign = sign;
        if (t->off_run >= TRIM_LOSE_AFTER) {
            t->state &= (uint8_t)~TRIM_LOCKED;
            t->off_run = 0;
            t->dither = t->filt = 0; /* acquisition again, from OSCCAL alone */
        }
    } else {
        t->off_run = 0;
    }
    return 0;
}

uint8_t trim_store_wanted(const trim_t *t)
{
    if (!(t->state & TRIM_LOCKED)) {
        return 0;
    }
    /* 2 LSB or more from the stored value; nothing stored (0xFF) counts as far from anything but
     * 0xFE..0x00, the very ends of the two ranges (modulo 256: one compare, for flash) */
    return (uint8_t)(t->osccal - t->ee_value + 1) > 2;
}
