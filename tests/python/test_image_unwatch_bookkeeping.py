"""When the watches of images the caller dropped end (ReadMemory.unwatch, docs/python.md "What
the library rewrites later"): the bookkeeping of ffibox._images in this process only. The
worker's side is tested through a real worker in test_images_follow_the_library.py and
test_raw_grpc.py; here a recording stand-in answers the watched reads, so the rare paths can
be made to happen: a read that fails, a worker restarted, more ends than one read carries."""
import ctypes
import gc

from ffibox import _images
from ffibox._images import Image, ImageTable
from ffibox.errors import Error


class RecordingMemory:
    """Answers watched reads with zeros (or raises `fail`), recording what each one sent."""

    def __init__(self):
        self.sent = []
        self.fail = None
        self.during = lambda: None  # what happens while a read is in flight

    def read_watched(self, address, size, generation, unwatch=()):
        self.sent.append((address, generation, sorted(unwatch)))
        self.during()
        if self.fail is not None:
            raise Error("the read failed", self.fail)
        return bytes(size), True


def watched_image(table, worker, generation=1):
    image = Image(ctypes.create_string_buffer(16), 16, worker, generation)
    image.watched = True
    return table._register(image)


def drop(*images):
    """Lets the images go (their watches are to end); the caller deletes its own names."""
    del images
    gc.collect()


def test_a_dropped_images_watch_ends_with_the_next_watched_read_only():
    memory = RecordingMemory()
    table = ImageTable(memory, None)
    kept = watched_image(table, 0x1000)
    drop(watched_image(table, 0x2000), watched_image(table, 0x3000))
    table._read_watched(0x4000, 8, 1)
    table._read_watched(0x5000, 8, 1)
    assert memory.sent == [(0x4000, 1, [0x2000, 0x3000]), (0x5000, 1, [])]
    assert kept.worker == 0x1000  # still mirrored: never sent


def ends_sent_around_a_failed_read(code, meanwhile=None):
    """The ends each watched read sent: the image of 0x2000 dropped, a read that fails with
    `code` (another thread doing `meanwhile(table)` while it is in flight), then a read that
    succeeds."""
    memory = RecordingMemory()
    table = ImageTable(memory, None)
    drop(watched_image(table, 0x2000))
    made = []
    if meanwhile is not None:
        memory.during = lambda: made.append(meanwhile(table))
    memory.fail = code
    assert table._read_watched(0x4000, 8, 1) == (None, False)
    memory.fail, memory.during = None, lambda: None
    table._read_watched(0x5000, 8, 1)
    return [sent[2] for sent in memory.sent]


def test_ends_a_failed_read_may_not_have_sent_go_with_the_next_one():
    # UNAVAILABLE: the worker may never have seen the list.
    assert ends_sent_around_a_failed_read("UNAVAILABLE") == [[0x2000], [0x2000]]


def test_a_fault_comes_after_the_unwatching_so_those_ends_are_not_sent_again():
    assert ends_sent_around_a_failed_read("MEMORY_FAULT") == [[0x2000], []]


def test_an_address_mirrored_again_meanwhile_is_not_put_back():
    # A new image of it, made while the read that sent its end was in flight and alive
    # through the next read: its watch must stay.
    assert ends_sent_around_a_failed_read(
        "UNAVAILABLE", lambda table: watched_image(table, 0x2000)) == [[0x2000], []]


def test_a_read_that_watches_an_address_pending_its_end_keeps_that_watch(monkeypatch):
    # One end per read: the read of one address sends the other's end and watches its own
    # again, whose pending end must then never be sent.
    monkeypatch.setattr(_images, "MAX_READS_PER_LIST", 1)
    memory = RecordingMemory()
    table = ImageTable(memory, None)
    drop(watched_image(table, 0x2000), watched_image(table, 0x3000))
    pending = table._unwatch[1]
    sent_first = next(iter(pending))  # the end the next read takes (a set pops its first)
    read = (pending - {sent_first}).pop()
    for address in (read, 0x5000, 0x5000):
        table._read_watched(address, 8, 1)
    assert [entry[2] for entry in memory.sent] == [[sent_first], [], []]


def test_ends_of_an_older_worker_are_forgotten_and_a_newer_ones_kept():
    memory = RecordingMemory()
    table = ImageTable(memory, None)
    drop(watched_image(table, 0x2000, generation=1), watched_image(table, 0x3000, generation=3))
    table._read_watched(0x4000, 8, 2)  # worker 2: worker 1 is gone, worker 3 not yet seen
    table._read_watched(0x4000, 8, 1)
    table._read_watched(0x4000, 8, 3)
    assert [(sent[1], sent[2]) for sent in memory.sent] == [(2, []), (1, []), (3, [0x3000])]


def test_more_ends_than_one_read_carries_go_with_the_reads_after_it(monkeypatch):
    monkeypatch.setattr(_images, "MAX_READS_PER_LIST", 3)
    memory = RecordingMemory()
    table = ImageTable(memory, None)
    drop(*[watched_image(table, 0x1000 * (i + 1)) for i in range(7)])
    for _ in range(4):
        table._read_watched(0x100000, 8, 1)
    counts = [len(sent[2]) for sent in memory.sent]
    assert counts == [3, 3, 1, 0]
    assert sorted(a for sent in memory.sent for a in sent[2]) == [
        0x1000 * (i + 1) for i in range(7)]


def test_an_image_collected_during_a_look_over_the_table_leaves_it_after_the_look():
    # A collection can end an image while this thread looks over the table under its lock
    # (the list of a range's images is made there, and allocates): the image's entries went
    # at once, under that look, which then found a start with no entry (rtree's queries:
    # KeyError). They go when the lock is released.
    table = ImageTable(RecordingMemory(), None)

    def plain_image(worker):
        image = Image(ctypes.create_string_buffer(16), 16, worker, 1)
        image.plain = True
        return table._register(image)

    kept, gone = plain_image(0x1000), plain_image(0x1008)
    start = gone.start
    with table._lock:
        looked = [table._images[s] for _, s in table._workers]
        del gone
        gc.collect()  # as in the middle of that look
        assert [table._images[s] for _, s in table._workers] == looked
        assert table._plain_images_at(0x1008, 8, 1) == [kept]  # a look inside the look
    assert start not in table._images and len(table._workers) == 1
    assert table._plain_images_at(0x1008, 8, 1) == [kept]
