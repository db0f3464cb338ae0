/* A library with 128 MiB of zero-filled data: the loader maps it at load, so it loads only
 * where the worker's address space has room for it (the memory-limit tests). */
char large_data_block[128 << 20];

/* The byte at `index` of the block (0: nothing writes it). */
int large_data_byte(int index) { return large_data_block[index]; }
