"""How a dialogue becomes a prompt and a summary becomes the target the model learns."""

from __future__ import annotations

from dataclasses import dataclass

DIALOGUE = "{dialogue}"


@dataclass
class PromptFormat:
    """The text around a dialogue.

    Args:
        template: text with one ``{dialogue}`` slot; the target follows it directly.
            Phi-2's instruction format by default.
        target_prefix: text put before the summary in the target (Phi-2 expects a space after ``Output:``).
        chat_template: wrap ``template`` as the user turn of the tokenizer's chat template instead.
        system: optional system message for ``chat_template``.
    """

    template: str = "Instruct: Summarize the following conversation.\n{dialogue}\nOutput:"
    target_prefix: str = " "
    chat_template: bool = False
    system: str | None = None

    def __post_init__(self) -> None:
        if self.template.count(DIALOGUE) != 1:
            raise ValueError(f"prompt template must contain {DIALOGUE} exactly once: {self.template!r}")

    def split(self, tokenizer) -> tuple[str, str]:
        """The prompt text before and after the dialogue, for this tokenizer."""
        text = self.template
        if self.chat_template:
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError("prompt.chat_template is true but the tokenizer has no chat template; set it to false")
            messages = [{"role": "user", "content": self.template}]
            if self.system:
                messages.insert(0, {"role": "system", "content": self.system})
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        before, after = text.split(DIALOGUE)
        return before, after
