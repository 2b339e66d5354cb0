/* SPDX-License-Identifier: MIT */
/* Error names. upager reports plain negative errno values; these are the
 * meanings they carry in upager's calls, which say more than strerror(). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "upager-int.h"

UPAGER__EXPORT const char *upager_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument (NULL handle, misaligned offset, zero length or unknown flag)";
	case -ERANGE:
		return "range outside the region";
	case -EEXIST:
		return "range already committed";
	case -ENOENT:
		return "range not committed";
	case -EFAULT:
		return "range no longer mapped where the region was (munmap/mremap by the program)";
	case -EDEADLK:
		return "called from a handler thread of the same pager (would deadlock)";
	case -EPERM:
		return "userfaultfd not permitted (see upager_probe() for what to change)";
	case -ENOSYS:
		return "userfaultfd not available in this kernel";
	case -EOPNOTSUPP:
		return "operation not supported by this kernel's userfaultfd";
	case -ENOMEM:
		return "out of memory or address space";
	case -EOVERFLOW:
		return "offset overflows the source";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}
