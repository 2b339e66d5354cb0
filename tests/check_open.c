#include "config.h"
#include "helpers.h"
static Suite *make(void){return suite_create("open");}
int main(void){return upt_main(make);}
