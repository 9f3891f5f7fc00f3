"""``spc-bridge bench``: the whole pipeline's throughput, latency and memory, beside a bare relay.

A run starts (or is pointed at) a broker, the bridge as a child process with a fresh SQLite
database, a bare aiomqtt relay (``relay.py``) as the yardstick, gauge processes (``load.py``) and
one subscriber (``subscriber.py``), measures both systems the same way (``phases.py``) and prints
one table (``report.py``). With ``--source``, a bridge of its own drains Kepware IoT Gateway or
Sparkplug B messages (``sources.py``) over the same characteristics (``workload.py``).
"""
