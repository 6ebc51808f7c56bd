"""What a loaded file becomes: a named document made of numbered pages of text."""

from typing import Literal

from pydantic import BaseModel, Field

Kind = Literal["pdf", "docx", "txt", "md"]


class Page(BaseModel):
    number: int = Field(ge=1)
    text: str


class Document(BaseModel):
    name: str
    sha256: str
    kind: Kind
    pages: list[Page]

    @property
    def char_count(self) -> int:
        return sum(len(page.text) for page in self.pages)
