package testsvc

import "testing"

func TestRedisstreamReaderSleeping(t *testing.T) {
	sleeping := `goroutine 368 [sleep]:
time.Sleep(0x1dcd6500)
	/usr/local/go/src/runtime/time.go:363 +0x165
github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream.(*Subscriber).read(0xc000001600, {0xf4cda8, 0xc00032f090}, {0xc0001920c0, 0x5f}, 0xc0001c05b0, 0xc0003bde90)
	/go/pkg/mod/github.com/!three!dots!labs/watermill-redisstream@v1.4.5/pkg/redisstream/subscriber.go:350 +0xe38`
	reading := `goroutine 369 [select]:
github.com/redis/go-redis/v9.(*baseClient).withConn(0xc000001600)
	/go/pkg/mod/github.com/redis/go-redis/v9@v9.23.0/redis.go:1 +0x1
github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream.(*Subscriber).read(0xc000001600)
	/go/pkg/mod/github.com/!three!dots!labs/watermill-redisstream@v1.4.5/pkg/redisstream/subscriber.go:300 +0xe38`
	other := `goroutine 370 [sleep]:
time.Sleep(0x1dcd6500)
	/usr/local/go/src/runtime/time.go:363 +0x165
main.poll()
	/src/main.go:10 +0x1`
	if !redisstreamReaderSleeping(sleeping) {
		t.Error("the reader in its post-error sleep is not recognized")
	}
	if redisstreamReaderSleeping(reading) {
		t.Error("a reader blocked in a read is taken for one on its way out")
	}
	if redisstreamReaderSleeping(other) {
		t.Error("another sleeping goroutine is taken for the reader")
	}
}
