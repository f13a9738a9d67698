#include <shval.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	shval *hits; /* an int64 in this process's anonymous segment */
	int64_t n = 0;
	if (shval_new("q", SHVAL_ATOMIC, NULL, 0, &hits) != 0)
		return 1;
	for (int i = 0; i < 4; i++)
		if (fork() == 0) { /* fork() children share the value */
			for (int j = 0; j < 100000; j++)
				shval_add_i64(hits, 1, NULL); /* lock-free, never lost */
			_exit(0);
		}
	while (wait(NULL) > 0) {}
	shval_get_i64(hits, &n);
	printf("hits = %lld\n", (long long)n); /* always 400000 */
	shval_close(hits);
}
