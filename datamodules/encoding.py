"""Token ids and loss labels for one example: the prompt is masked, the summary and EOS are learned."""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.prompts import PromptFormat

IGNORE_INDEX = -100  # label of positions that carry no loss (prompt, padding)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


class PromptEncoder:
    """Tokenizes prompts and targets; truncation cuts the dialogue, never the summary."""

    def __init__(self, tokenizer, prompt: PromptFormat, max_length: int) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; the model could not learn to stop")
        self.tokenizer = tokenizer
        self.max_length = max_length
        before, after = prompt.split(tokenizer)
        self.prompt = prompt
        self._before = self._ids(before, add_special_tokens=True)
        self._after = self._ids(after)

    def _ids(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if not text:
            return []
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def prompt_ids(self, dialogue: str, budget: int | None = None) -> tuple[list[int], bool]:
        """The prompt's ids, the dialogue cut (from its end) to fit ``budget`` tokens."""
        budget = self.max_length if budget is None else budget
        body = self._ids(dialogue)
        room = budget - len(self._before) - len(self._after)
        truncated = len(body) > room
        return self._before + body[: max(room, 0)] + self._after, truncated

    def encode(self, dialogue: str, summary: str) -> Encoded | None:
        """Ids and labels for training; None when the summary alone leaves no room for the dialogue."""
        target = self._ids(self.prompt.target_prefix + summary) + [self.tokenizer.eos_token_id]
        budget = self.max_length - len(target)
        if budget - len(self._before) - len(self._after) < 1:
            return None
        prompt, truncated = self.prompt_ids(dialogue, budget)
        return Encoded(prompt + target, [IGNORE_INDEX] * len(prompt) + target, truncated)
