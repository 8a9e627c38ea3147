"""A results store for crash-consistency tests: it logs every write and delete, and can fail
(raise :class:`Crash`) at the n-th one, before or after doing it."""

from sweep.store import Store


class Crash(Exception):
    pass


class RecordingStore(Store):
    """``log``: the list the operations are appended to (shared by several stores of one
    job; a new list by default). ``fail_at``: the index of the operation that raises,
    ``after``: whether it is done first. ``skip_noop_deletes``: a delete of a missing file is
    not an operation."""

    def __init__(self, storage, experiment, *, log=None, fail_at=None, after=False, skip_noop_deletes=False):
        super().__init__(storage, experiment)
        self.log = [] if log is None else log
        self.fail_at, self.after, self.skip_noop_deletes = fail_at, after, skip_noop_deletes

    def _op(self, name, do):
        index = len(self.log)
        self.log.append(name)
        if index == self.fail_at and not self.after:
            raise Crash(name)
        do()
        if index == self.fail_at and self.after:
            raise Crash(name)

    def write_bytes(self, data, *parts):
        self._op("/".join(parts), lambda: Store.write_bytes(self, data, *parts))

    def delete(self, *parts):
        if self.skip_noop_deletes and not Store.exists(self, *parts):
            return
        self._op("delete " + "/".join(parts), lambda: Store.delete(self, *parts))
