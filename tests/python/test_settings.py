"""The Python client's settings from the environment (ffibox/_settings.py): the spellings of
yes and no it takes, and a value that means nothing refused with the variable's name rather
than taken for the default."""
import pytest

import ffibox
from ffibox import _settings


@pytest.fixture
def client(server):
    c = ffibox.connect(server.address)
    yield c
    c.close()


@pytest.mark.parametrize("value,expected", [
    ("", None), ("  ", None), ("1", True), ("true", True), ("Yes", True), ("ON", True),
    ("0", False), ("false", False), ("no", False), ("Off", False), (" 0 ", False)])
def test_a_flag_takes_the_usual_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("FFIBOX_TEST_FLAG", value)
    assert _settings.flag("FFIBOX_TEST_FLAG") is expected


def test_an_unset_flag_is_none(monkeypatch):
    monkeypatch.delenv("FFIBOX_TEST_FLAG", raising=False)
    assert _settings.flag("FFIBOX_TEST_FLAG") is None


@pytest.mark.parametrize("value", ["2", "enable", "y es", "-1"])
def test_a_flag_that_means_nothing_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("FFIBOX_TEST_FLAG", value)
    with pytest.raises(ValueError) as refused:
        _settings.flag("FFIBOX_TEST_FLAG")
    assert "$FFIBOX_TEST_FLAG" in str(refused.value)
    assert repr(value) in str(refused.value)


def test_a_count_is_a_whole_number_of_at_least_one(monkeypatch):
    monkeypatch.delenv("FFIBOX_TEST_COUNT", raising=False)
    assert _settings.count("FFIBOX_TEST_COUNT", 7) == 7
    monkeypatch.setenv("FFIBOX_TEST_COUNT", "")
    assert _settings.count("FFIBOX_TEST_COUNT", 7) == 7
    monkeypatch.setenv("FFIBOX_TEST_COUNT", " 12 ")
    assert _settings.count("FFIBOX_TEST_COUNT", 7) == 12
    for bad in ("0", "-3", "many", "1.5"):
        monkeypatch.setenv("FFIBOX_TEST_COUNT", bad)
        with pytest.raises(ValueError) as refused:
            _settings.count("FFIBOX_TEST_COUNT", 7)
        assert "$FFIBOX_TEST_COUNT" in str(refused.value)


def test_a_session_refuses_a_bad_setting_before_it_opens(client, monkeypatch):
    # Nothing is opened for a session that cannot start: the client's next session works.
    for name in ("FFIBOX_CHANNEL_CALLBACKS", "FFIBOX_SCRATCH", "FFIBOX_MAX_IMAGES"):
        monkeypatch.setenv(name, "sometimes")
        with pytest.raises(ValueError) as refused:
            client.session()
        assert "$" + name in str(refused.value)
        monkeypatch.delenv(name)
    monkeypatch.setenv("FFIBOX_MAX_IMAGES", "9")
    with client.session() as session:
        assert session.images.max_images == 9
        assert session.CDLL("libm.so.6").labs(-4) == 4


@pytest.mark.parametrize("value,expected", [
    ("", None), ("67108864", 64 << 20), ("64M", 64 << 20), ("8g", 8 << 30), (" 8GiB ", 8 << 30),
    ("1T", 1 << 40), ("32M", 32 << 20)])
def test_a_byte_count_takes_a_binary_unit(monkeypatch, value, expected):
    monkeypatch.setenv("FFIBOX_MEMORY_LIMIT", value)
    assert _settings.memory_limit() == expected


@pytest.mark.parametrize("value", ["31M", "0", "-1G", "4 GB", "lots", "1.5G", "G", "\u00b2G"])
def test_a_byte_count_that_means_nothing_or_too_little_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("FFIBOX_MEMORY_LIMIT", value)
    with pytest.raises(ValueError) as refused:
        _settings.memory_limit()
    assert "$FFIBOX_MEMORY_LIMIT" in str(refused.value) and "32 MiB" in str(refused.value)


def test_a_session_takes_its_memory_limit_from_the_environment(client, monkeypatch):
    assert client.session().memory_limit == 4 << 30  # the server's cap
    monkeypatch.setenv("FFIBOX_MEMORY_LIMIT", "64M")
    assert client.session().memory_limit == 64 << 20
    assert client.session(memory_limit=128 << 20).memory_limit == 128 << 20
    monkeypatch.setenv("FFIBOX_MEMORY_LIMIT", "8G")  # more than the server's cap
    with pytest.raises(ffibox.Error) as refused:
        client.session()
    assert refused.value.code == "INVALID_ARGUMENT" and "memory_limit" in str(refused.value)


def test_a_timeout_is_whole_milliseconds_never_the_servers_default_by_rounding(
        client, monkeypatch):
    # 0.4 ms went as 0, the server's default of 30 s; 1e300 s failed with protobuf's
    # "Value out of range", naming no setting.
    assert _settings.milliseconds(None, "t") == _settings.milliseconds(0, "t") == 0
    assert _settings.milliseconds(0.0004, "t") == 1
    assert _settings.milliseconds(2.5, "t") == 2500
    for bad in (-1, float("inf"), float("nan"), 1e300):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            _settings.milliseconds(bad, "timeout")
    with client.session(timeout=0.0004) as session:
        assert session.call_timeout_ms == 1
    monkeypatch.setenv("FFIBOX_TIMEOUT", "1e300")
    with pytest.raises(ValueError, match=r"\$FFIBOX_TIMEOUT is '1e300'"):
        client.session()


def test_an_address_from_the_environment_that_is_no_address_is_refused(monkeypatch):
    # It started a private server instead, as for a socket nothing listens on.
    for address in ("unix:", "unix:/tmp/a%41.sock"):
        monkeypatch.setenv("FFIBOX_ADDRESS", address)
        with pytest.raises(ffibox.Error, match=r"\(from FFIBOX_ADDRESS\)") as refused:
            ffibox.connect()
        assert refused.value.code == "INVALID_ARGUMENT"
