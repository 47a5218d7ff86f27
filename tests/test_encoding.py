"""Prompt masking, EOS, truncation and padding as the loss sees them."""

from __future__ import annotations

from datamodules.batching import collate
from datamodules.encoding import IGNORE_INDEX, PromptEncoder
from datamodules.prompts import PromptFormat

DIALOGUE = "#Person1#: Shall we meet at ten?\n#Person2#: Make it eleven, I have a call."
SUMMARY = "#Person1# and #Person2# will meet at eleven."


def test_prompt_positions_are_masked_and_target_ends_with_eos(tokenizer):
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=512)
    encoded = encoder.encode(DIALOGUE, SUMMARY)
    prompt, _ = encoder.prompt_ids(DIALOGUE)
    assert encoded.input_ids[: len(prompt)] == prompt
    assert encoded.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    target = encoded.labels[len(prompt) :]
    assert IGNORE_INDEX not in target
    assert target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(target[:-1]) == " " + SUMMARY
    assert tokenizer.decode(prompt).endswith("\nOutput:")


def test_eos_keeps_its_label_when_pad_is_eos(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=512)
    short, long = encoder.encode("#Person1#: Hi.", "They greet."), encoder.encode(DIALOGUE, SUMMARY)
    batch = collate([vars(short), vars(long)], pad_id=tokenizer.pad_token_id)
    row = batch["labels"][0].tolist()
    n = len(short.input_ids)
    assert row[n - 1] == tokenizer.eos_token_id  # the EOS is learned...
    assert row[n:] == [IGNORE_INDEX] * (len(row) - n)  # ...the padding (same id) is not


def test_truncation_cuts_the_dialogue_never_the_summary(tokenizer):
    long_dialogue = "\n".join(f"#Person{1 + i % 2}#: line number {i} of a very long talk." for i in range(200))
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=128)
    encoded = encoder.encode(long_dialogue, SUMMARY)
    assert encoded.truncated and len(encoded.input_ids) == 128
    target = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(target[:-1]) == " " + SUMMARY
    assert tokenizer.decode(encoded.input_ids).rstrip().endswith("Output: " + SUMMARY + tokenizer.eos_token)


def test_summary_longer_than_max_length_is_dropped(tokenizer):
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=20)
    assert encoder.encode(DIALOGUE, SUMMARY * 5) is None


def test_left_padding_for_generation(tokenizer):
    batch = collate([{"input_ids": [5, 6]}, {"input_ids": [7, 8, 9]}], pad_id=0, pad_side="left")
    assert batch["input_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
