/* The public header alone, under -std=c99 -pedantic -Werror (and as C++
 * where a compiler is around): it must not depend on anything else. */
#include "upager.h"

int main(void)
{
	upager_options_t o;

	upager_options_init(&o);
	return upager_strerror(0) ? 0 : 1;
}
