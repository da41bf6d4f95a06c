"""The exec/attach channel protocol: frames, subprotocol negotiation, resize frames, and the error
channel's Status for an exit code (and back, as kubectl reads it)."""

from __future__ import annotations

import json

import pytest

from control.api import remotecommand as rc


def test_a_frame_is_its_channel_byte_then_the_data() -> None:
    assert rc.encode(rc.STDOUT, b"hi\n") == b"\x01hi\n"
    assert rc.decode(b"\x02oops") == (rc.STDERR, b"oops")
    assert rc.decode(b"\x00") == (rc.STDIN, b"")
    assert rc.decode(rc.encode(rc.CLOSE, bytes((rc.STDIN,)))) == (255, b"\x00")


def test_an_empty_message_or_a_channel_past_one_byte_is_refused() -> None:
    with pytest.raises(rc.FrameError, match="channel byte"):
        rc.decode(b"")
    with pytest.raises(rc.FrameError, match="one byte"):
        rc.encode(256, b"")


def test_negotiation_prefers_v5_and_refuses_what_is_not_served() -> None:
    assert rc.negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]) == rc.V5
    assert rc.negotiate([" v4.channel.k8s.io"]) == rc.V4
    assert rc.negotiate(["channel.k8s.io", "base64.channel.k8s.io"]) is None
    assert rc.negotiate([]) is None


def test_resize_frames_are_client_go_terminal_sizes() -> None:
    assert rc.decode_resize(b'{"Width":120,"Height":40}') == (120, 40)
    for bad in (b"", b"[1, 2]", b'{"Width": 80}', b'{"Width": -1, "Height": 2}', b'{"Width": true, "Height": 2}',
                b'{"Width": 70000, "Height": 2}', b'{"Width": "80", "Height": 24}'):
        with pytest.raises(rc.FrameError):
            rc.decode_resize(bad)


def test_exit_zero_is_success_and_others_carry_their_code() -> None:
    assert rc.status_for_exit(0, ["true"]) == {"metadata": {}, "status": "Success"}
    status = rc.status_for_exit(3, ["sh", "-c", "exit 3"])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert status["message"] == ("command terminated with non-zero exit code: error executing command "
                                 "[sh -c exit 3], exit code 3")
    json.dumps(status)  # it goes on the wire as JSON


@pytest.mark.parametrize("code", [0, 1, 3, 127, 137, 255])
def test_the_exit_code_reads_back_from_its_status(code: int) -> None:
    assert rc.exit_code_of(rc.status_for_exit(code, ["x"])) == code


def test_a_failure_other_than_an_exit_code_has_none() -> None:
    assert rc.exit_code_of(rc.failure_status("failed to start 'x': No such file or directory")) is None
    assert rc.exit_code_of({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": [
        {"reason": "ExitCode", "message": "three"}]}}) is None
    assert rc.exit_code_of({"status": "Failure", "reason": "NonZeroExitCode"}) is None
