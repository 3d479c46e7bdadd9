"""Starts a tally server and waits until it is ready. Imported by bench/scale.py; run on its
own (`python3 bench/serve.py BINARY CONFIG`) it prints the median start-to-ready time in ms
over 5 starts on that config."""
import subprocess
import sys
import time
import urllib.request


def start(binary, config):
    """Returns (server process, its address, ms from spawn to the first 200 from /readyz)."""
    started = time.monotonic()
    server = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env={"RUST_LOG": "warn"})
    addr = server.stdout.readline().decode().strip().removeprefix("listening on http://")
    while True:
        try:
            if urllib.request.urlopen(f"http://{addr}/readyz").status == 200:
                break
        except Exception:
            time.sleep(0.001)
    return server, addr, (time.monotonic() - started) * 1000


def stop(server):
    server.terminate()
    server.wait()


if __name__ == "__main__":
    times = []
    for _ in range(5):
        server, _, ready_ms = start(sys.argv[1], sys.argv[2])
        stop(server)
        times.append(ready_ms)
    print(round(sorted(times)[len(times) // 2], 1))
