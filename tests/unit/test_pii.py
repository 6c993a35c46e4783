from iccache_sidecar.core.pii import redact


def test_redacts_contact_details_and_keeps_the_rest() -> None:
    text = (
        "Mail jane.doe@example.com or call +44 20 7946 0958 from 10.1.2.3; "
        "card 4111 1111 1111 1111."
    )
    out = redact(text)
    for secret in ("jane.doe@example.com", "7946", "10.1.2.3", "4111"):
        assert secret not in out
    assert out.startswith("Mail [EMAIL] or call [PHONE] from [IP]")
    assert "[CARD]" in out


def test_plain_questions_are_untouched() -> None:
    q = "In which year did the Berlin Wall fall, and how long was it?"
    assert redact(q) == q
