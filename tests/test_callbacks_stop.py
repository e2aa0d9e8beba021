"""``gonets callbacks`` stops on SIGTERM whatever its main thread is doing: the signal handler
runs in the main thread, which may hold the lock of the stop event at that moment (waiting on
it between retries); the old handler set the event there and the process hung for ever."""

from __future__ import annotations

import signal
import threading

from producers.http.callbacks import Dispatcher, install_stop_signals


def test_sigterm_while_the_main_thread_holds_the_stop_events_lock_still_stops(api_settings):
    d = Dispatcher(api_settings, threads=1)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        install_stop_signals(d)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        returned = threading.Event()
        # the handler interrupts a thread that holds the event's lock: call it from a thread
        # while this one holds that lock, as the interrupted main thread would
        with d._stop._cond:  # type: ignore[attr-defined]
            t = threading.Thread(target=lambda: (handler(signal.SIGTERM, None), returned.set()),
                                 daemon=True)
            t.start()
            assert returned.wait(5), "the SIGTERM handler blocked on the stop event's lock"
        assert d._stop.wait(5) and d._wake.is_set()
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        d.client.close()
