"""What the benchmark feeds the bridge: N individuals charts with fixed limits, one topic each."""

from pathlib import Path

TOPIC_ROOT = "bench/gauge"


def topic(characteristic_id: int) -> str:
    """The ingest topic of a benchmark characteristic."""
    return f"{TOPIC_ROOT}/{characteristic_id}"


def write_config(path: Path, characteristics: int) -> Path:
    """A characteristics file of ``characteristics`` I-MR charts on ``bench/gauge/<id>``.

    Fixed limits (centre 10, sigma 1) put every chart in monitoring from its first reading, with all
    eight Nelson rules, as on a line whose limits are established.
    """
    tables = (f'[[characteristic]]\nid = {i}\nname = "bench {i}"\ntopic = "{topic(i)}"\n'
              f'chart = "imr"\ncenter = 10.0\nsigma = 1.0\n' for i in range(1, characteristics + 1))
    path.write_text("\n".join(tables))
    return path


def read_topics(path: Path) -> list[str]:
    """The ingest topics of a characteristics file, in file order."""
    import tomllib

    with path.open("rb") as f:
        return [str(table["topic"]) for table in tomllib.load(f)["characteristic"]]
