/* Host driver for trim.c: the Python tests feed it events and compare every state with
 * tools/packmon/sim/trim_model.py. stdin: "I osccal stored" | "S span" | "E good"; stdout after each:
 * "osccal state err01 steps moved dither". */
#include <stdio.h>

#include "trim.h"

int main(void)
{
    trim_t t;
    trim_init(&t, 0x48, 0xFF);
    char op;
    int a, b;
    while (scanf(" %c", &op) == 1) {
        int moved = 0;
        if (op == 'I' && scanf("%d %d", &a, &b) == 2) {
            trim_init(&t, (uint8_t)a, (uint8_t)b);
        } else if (op == 'S' && scanf("%d", &a) == 1) {
            moved = trim_sof(&t, (uint16_t)a);
        } else if (op == 'E' && scanf("%d", &a) == 1) {
            moved = trim_frame_end(&t, (uint8_t)a);
        } else {
            return 1;
        }
        printf("%d %d %d %d %d %d\n", t.osccal, t.state, t.err01, t.steps, moved, t.dither);
    }
    return 0;
}
