# Cython declarations that augment index_build.py when setup.py compiles it (plain Python
# ignores this file): the two CRCs of a stream key's 64-bit hash (hashing.bytes_hash64), in C
# and table-driven, so that hashing a segment's keys calls nothing per key. sdb_crc32_ieee is
# zlib's crc32 (polynomial 0xEDB88320) and sdb_crc32c_sw is CRC32C (0x82F63B78) for a CPU
# without the instruction of sdb_crc32c.pxd; the tests check both against zlib and
# google_crc32c.

cdef extern from *:
    """
    #include <stdint.h>
    static uint32_t sdb_crc_tables[2][256];
    static int sdb_crc_tables_ready = 0;
    static void sdb_crc_tables_init(void) {
        const uint32_t polys[2] = {0xEDB88320u, 0x82F63B78u};
        for (int t = 0; t < 2; t++) {
            for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int k = 0; k < 8; k++) c = (c & 1) ? polys[t] ^ (c >> 1) : c >> 1;
                sdb_crc_tables[t][i] = c;
            }
        }
        sdb_crc_tables_ready = 1;
    }
    static uint32_t sdb_crc_table_run(int t, const unsigned char *p, Py_ssize_t n) {
        if (!sdb_crc_tables_ready) sdb_crc_tables_init();
        const uint32_t *table = sdb_crc_tables[t];
        uint32_t c = 0xFFFFFFFFu;
        while (n-- > 0) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
    static uint32_t sdb_crc32_ieee(const unsigned char *p, Py_ssize_t n) {
        return sdb_crc_table_run(0, p, n);
    }
    static uint32_t sdb_crc32c_sw(const unsigned char *p, Py_ssize_t n) {
        return sdb_crc_table_run(1, p, n);
    }
    """
    unsigned int sdb_crc32_ieee(const unsigned char *p, Py_ssize_t n) nogil
    unsigned int sdb_crc32c_sw(const unsigned char *p, Py_ssize_t n) nogil
