/* SPDX-License-Identifier: MIT */
/* CRC32C, shared by the page protocol and the snapshot format. Internal. */
#ifndef UPAGER_CRC32C_H
#define UPAGER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Takes and returns the CRC without the final inversion folded in, so
 * calls chain: upp_crc32c(upp_crc32c(0, a, n), b, m) == crc of a || b. */
uint32_t upp_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
