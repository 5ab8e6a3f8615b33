/* Host tests of the node firmware's pure modules: every vector of tests/vectors/frames.json through
 * protocol.c, the CRC examples, the ADC math and the EEPROM settings guard. Exit status 0 = all good. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "adc.h"
#include "crc16.h"
#include "protocol.h"
#include "settings.h"

struct crc_vec {
    const uint8_t *data;
    uint16_t len;
    uint16_t crc;
};

struct frame_vec {
    const char *name;
    const uint8_t *in;
    uint16_t in_len;
    const uint8_t *out;
    uint16_t out_len;
    int timeout;
    int framing_at;
    node_t given;
    node_t after;
};

#include "vectors.h"

static int failures;
static int checks;
static uint8_t emitted[1024];
static uint16_t n_emitted;

uint8_t proto_emit(uint8_t b)
{
    if (n_emitted >= sizeof emitted) {
        return 0;
    }
    emitted[n_emitted++] = b;
    return 1;
}

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        checks++;                                                                                            \
        if (!(cond)) {                                                                                       \
            failures++;                                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                      \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
        }                                                                                                    \
    } while (0)

static void hex(const char *label, const uint8_t *b, uint16_t n)
{
    printf("  %s ", label);
    for (uint16_t i = 0; i < n; i++) {
        printf("%02x", b[i]);
    }
    printf("\n");
}

static int same_state(const node_t *a, const node_t *b)
{
    return a->address == b->address && a->flags == b->flags && a->bad == b->bad && a->scans == b->scans &&
           a->mv == b->mv && a->temp == b->temp && a->settings.vref == b->settings.vref &&
           a->settings.temp_offset == b->settings.temp_offset && a->settings.sensor == b->settings.sensor &&
           a->settings.flags == b->settings.flags && a->settings.reserved == b->settings.reserved &&
           a->identify == b->identify && a->snap == b->snap && a->snap_seq == b->snap_seq &&
           a->snap_wait == b->snap_wait && a->snap_flags == b->snap_flags && a->snap_mv == b->snap_mv &&
           a->snap_temp == b->snap_temp && a->snap_bad == b->snap_bad && a->fault == b->fault &&
           a->snap_dev == b->snap_dev;
}

static int test_frame_vectors(void)
{
    int checked = 0;
    for (int i = 0; i < N_FRAME_VECS; i++) {
        const struct frame_vec *v = &frame_vecs[i];
        node_t n = v->given;
        proto_reset();
        n_emitted = 0;
        uint16_t lagged = 0;
        for (uint16_t k = 0; k < v->in_len; k++) {
            uint16_t before = n_emitted;
            uint8_t inside = proto_in_frame() || v->in[k] == PROTO_SOF;
            proto_rx(&n, v->in[k], (int)k == v->framing_at);
            /* no lag (protocol 1.2, section 4): a byte of a frame leaves as it arrives, or not at all (a bad
             * header stops the frame) */
            if (inside && n_emitted != before + 1 && proto_in_frame()) {
                lagged++;
            }
        }
        CHECK(lagged == 0, "vector %s: %u bytes did not leave as they arrived", v->name, lagged);
        if (v->timeout) {
            proto_timeout(&n);
        }
        int ok_out = n_emitted == v->out_len && memcmp(emitted, v->out, v->out_len) == 0;
        CHECK(ok_out, "vector %s: output differs", v->name);
        if (!ok_out) {
            hex("want", v->out, v->out_len);
            hex("got ", emitted, n_emitted);
        }
        CHECK(same_state(&n, &v->after), "vector %s: node state after differs (addr %u/%u flags %02x/%02x bad %u/%u scans %u/%u)",
              v->name, n.address, v->after.address, n.flags, v->after.flags, n.bad, v->after.bad, n.scans,
              v->after.scans);
        CHECK(!proto_in_frame(), "vector %s: still inside a frame at the end", v->name);
        checked++;
    }
    return checked;
}

static void test_crc(void)
{
    for (int i = 0; i < N_CRC_VECS; i++) {
        CHECK(crc16(crc_vecs[i].data, crc_vecs[i].len) == crc_vecs[i].crc, "crc example %d", i);
    }
}

static void test_forwarding_survives_garbage(void)
{
    /* after any prefix of junk and an abandoned frame, a good frame is still forwarded */
    node_t n;
    memset(&n, 0, sizeof n);
    settings_defaults(&n.settings);
    proto_reset();
    const uint8_t junk[] = {0xA5, 0x02, 0x01, 0x00, 0x02, 0x00, 0x13};
    for (unsigned k = 0; k < sizeof junk; k++) {
        proto_rx(&n, junk[k], 0);
    }
    proto_timeout(&n);
    CHECK(n.bad == 1, "abandoned frame counted");
    const uint8_t enumerate[] = {0xA5, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0xE1, 0xE1};
    n_emitted = 0;
    for (unsigned k = 0; k < sizeof enumerate; k++) {
        proto_rx(&n, enumerate[k], 0);
    }
    CHECK(n_emitted == 9 && n.address == 1, "enumerate after garbage: %u bytes, address %u", n_emitted, n.address);
}

static void test_adc_math(void)
{
    /* 16 bandgap conversions of 1100 mV against Vcc = 3300 mV read 341 each (1100*1024/3300 = 341.3) */
    uint16_t mv = adc_vcc_mv((uint16_t)(16 * 341), VREF_DEFAULT);
    CHECK(mv >= 3299 && mv <= 3306, "vcc 3300 -> %u", mv);
    mv = adc_vcc_mv((uint16_t)(16 * 268), VREF_DEFAULT); /* 4.2 V */
    CHECK(mv >= 4195 && mv <= 4210, "vcc 4200 -> %u", mv);
    /* calibration scales linearly with vref */
    uint16_t a = adc_vcc_mv(5456, 11000), b = adc_vcc_mv(5456, 11110);
    int32_t back = (int32_t)((uint32_t)b * 11000u / 11110u) - a;
    CHECK(b > a && back >= -1 && back <= 1, "vref scaling %u %u", a, b);
    CHECK(adc_vcc_mv(0, VREF_DEFAULT) == 0, "zero reading is a fault");
    CHECK(adc_vcc_mv(16 * 1023, VREF_DEFAULT) == 0, "1.1 V Vcc is implausible");
    CHECK(adc_vcc_mv(16 * 150, VREF_DEFAULT) == 0, "7.5 V Vcc is implausible");

    CHECK(adc_internal_temp_dc(16 * 300) == 250, "300 LSB -> 25.0 C: %d", adc_internal_temp_dc(16 * 300));
    CHECK(adc_internal_temp_dc(16 * 370) == 900, "370 LSB -> 90.0 C: %d", adc_internal_temp_dc(16 * 370));
    CHECK(adc_internal_temp_dc(16 * 230) == -400, "230 LSB -> -40.0 C: %d", adc_internal_temp_dc(16 * 230));
    CHECK(adc_internal_temp_dc(16 * 100) == TEMP_NONE, "100 LSB is a sensor fault");
    CHECK(adc_internal_temp_dc(16 * 600) == TEMP_NONE, "600 LSB is a sensor fault");

    /* TMP36: 750 mV at 25 C; at Vcc 3300 mV that reads 750*1024/3300 = 232.7 LSB */
    int16_t t = adc_tmp36_dc((uint16_t)(16 * 233), 3300);
    CHECK(t >= 245 && t <= 255, "tmp36 25 C -> %d", t);
    CHECK(adc_tmp36_dc(0, 3300) == TEMP_NONE, "tmp36 shorted");
    CHECK(adc_tmp36_dc(16 * 1023, 3300) == TEMP_NONE, "tmp36 open/pulled up");

    /* NTC 10k/B3950 against 10k: at 25 C the divider is half way (512 LSB) */
    t = adc_ntc_dc(16 * 512);
    CHECK(t >= 245 && t <= 255, "ntc 25 C -> %d", t);
    t = adc_ntc_dc(16 * 264); /* NTC to GND: a low reading is a low resistance, i.e. warm (~52 C) */
    CHECK(t > 500 && t < 700, "ntc low reading is warm -> %d", t);
    CHECK(adc_ntc_dc(16 * 1020) == TEMP_NONE, "ntc open");
    CHECK(adc_ntc_dc(16 * 2) == TEMP_NONE, "ntc shorted");
    CHECK(adc_apply_offset(250, -15) == 235 && adc_apply_offset(TEMP_NONE, 20) == TEMP_NONE, "offset");
}

static void test_settings_guard(void)
{
    settings_t s, r;
    uint8_t img[SETTINGS_IMAGE_SIZE];
    settings_defaults(&s);
    s.vref = 10876;
    s.temp_offset = -12;
    s.sensor = SENSOR_NTC;
    s.flags = SETTINGS_CALIBRATED;
    settings_to_image(&s, img);
    CHECK(settings_from_image(img, &r) == 1 && r.vref == 10876 && r.temp_offset == -12 && r.sensor == 2 &&
              r.flags == 1,
          "settings round trip");
    img[3] ^= 0x01;
    CHECK(settings_from_image(img, &r) == 0 && r.vref == VREF_DEFAULT && r.flags == 0, "corrupt image -> defaults");
    memset(img, 0xFF, sizeof img);
    CHECK(settings_from_image(img, &r) == 0 && r.vref == VREF_DEFAULT, "blank EEPROM -> defaults");
    s.vref = 20000;
    settings_to_image(&s, img);
    CHECK(settings_from_image(img, &r) == 0, "intact image with invalid values -> defaults");
}

/* adc.c computes the temperatures without signed 32-bit division (to save flash); these are the
 * formulas it replaced, signed and rounded half away from zero: every possible sum must agree. */
static int16_t ref_div_round(int32_t num, int32_t den)
{
    return (int16_t)(num >= 0 ? (num + den / 2) / den : (num - den / 2) / den);
}

static const uint16_t ref_ntc[] = {15605, 15322, 14964, 14520, 13983, 13351, 12628, 11823, 10954, 10043, 9114,
                                   8192,  7301,  6458,  5677,  4965,  4326,  3760,  3262,  2828,  2452, 2127,
                                   1847,  1606,  1399,  1221,  1068};

static void test_adc_unsigned_math(void)
{
    int bad_internal = 0, bad_ntc = 0;
    for (uint32_t sum = 0; sum < 16u * 1024u; sum++) {
        int16_t want = (sum < 16u * 180u || sum > 16u * 450u)
                           ? TEMP_NONE
                           : (int16_t)(250 + ref_div_round(((int32_t)sum - 4800) * 650, 1120));
        bad_internal += adc_internal_temp_dc((uint16_t)sum) != want;
        const unsigned np = sizeof ref_ntc / sizeof ref_ntc[0];
        if (sum > ref_ntc[0] || sum < ref_ntc[np - 1]) {
            want = TEMP_NONE;
        } else {
            unsigned i = 0;
            while (i < np - 2 && sum < ref_ntc[i + 1]) {
                i++;
            }
            want = (int16_t)(-300 + 50 * (int)i +
                             ref_div_round((int32_t)(ref_ntc[i] - sum) * 50, ref_ntc[i] - ref_ntc[i + 1]));
        }
        bad_ntc += adc_ntc_dc((uint16_t)sum) != want;
    }
    CHECK(bad_internal == 0, "internal sensor: %d sums differ from the signed formula", bad_internal);
    CHECK(bad_ntc == 0, "NTC: %d sums differ from the signed formula", bad_ntc);
}

int main(void)
{
    test_crc();
    int n = test_frame_vectors();
    test_forwarding_survives_garbage();
    test_adc_math();
    test_adc_unsigned_math();
    test_settings_guard();
    printf("checked %d frame vectors, %d CRC examples; %d checks, %d failed\n", n, N_CRC_VECS, checks, failures);
    return failures ? 1 : 0;
}
