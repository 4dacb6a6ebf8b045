import io

from grounding.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_interval_and_at_the_end_when_not_a_terminal():
    out = io.StringIO()
    with Progress("embed", 3, every=0, stream=out) as progress:
        for _ in range(3):
            progress.advance(1, "5.0 items/s")
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[:2] for line in lines] == [["embed 1/3", "5.0 items/s"], ["embed 2/3", "5.0 items/s"],
                                                        ["embed 3/3", "5.0 items/s"]]
    assert all(line.split("  ")[-1].startswith("eta ") for line in lines)


def test_a_short_job_prints_nothing_unless_its_end_is_asked_for():
    quiet, told = io.StringIO(), io.StringIO()
    for stream, always_end in ((quiet, False), (told, True)):
        with Progress("shard", 2, stream=stream, always_end=always_end) as progress:
            progress.advance(2)
    assert quiet.getvalue() == "" and told.getvalue().startswith("shard 2/2  eta 0m00s")


def test_hidden_progress_says_nothing_but_messages():
    out = io.StringIO()
    with Progress("classify", 2, show=False, every=0, stream=out) as progress:
        progress.advance()
        progress.say("skipped: a.png: not an image")
        progress.advance()
    assert out.getvalue() == "skipped: a.png: not an image\n"


def test_a_terminal_gets_a_live_bar():
    out = _Terminal()
    with Progress("encode", 4, stream=out) as progress:
        progress.advance(4)
    assert "encode" in out.getvalue() and "4/4" in out.getvalue()
