/* Writes ycck.jpg (a 4-component JPEG stored as YCCK, Adobe transform 2) for the
 * decoder tests; PIL cannot write YCCK.  Build and run once from this folder:
 *   cc gen_ycck.c -ljpeg -o /tmp/gen_ycck && /tmp/gen_ycck
 * then rerun make_refs.py to get PIL's RGB bytes for it. */
#include <stdio.h>
#include <jpeglib.h>

int main(void)
{
    enum { W = 21, H = 11 };
    static unsigned char px[H][W * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            px[y][x * 4 + 0] = (unsigned char)(x * 12);
            px[y][x * 4 + 1] = (unsigned char)(y * 23);
            px[y][x * 4 + 2] = (unsigned char)((x + y) * 8);
            px[y][x * 4 + 3] = (unsigned char)(x > 10 ? 40 : 200);
        }
    FILE *f = fopen("ycck.jpg", "wb");
    if (!f) return 1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = W;
    c.image_height = H;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < H; y++) {
        JSAMPROW row = px[y];
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
    return 0;
}
