"""A command's refusal, and the parsing of its request into the contract's model with readable errors."""

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bridge.contract import MAX_TRANSACTION_CHARS

_TRANSACTION_RULE = (f"transaction: must be a string of at most {MAX_TRANSACTION_CHARS} characters "
                     "or a 64-bit integer")
Model = TypeVar("Model", bound=BaseModel)


class CommandError(ValueError):
    """A request that cannot be carried out; the message is sent back to its user."""


def parse(model: type[Model], payload: bytes) -> Model:
    """The request as ``model``; CommandError naming every problem, one line per field."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as error:
        problems = dict.fromkeys(
            _TRANSACTION_RULE if e["loc"][:1] == ("transaction",)  # one line, not one per type of the union
            else f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}"
            for e in error.errors(include_url=False))
        raise CommandError(f"bad request: {'; '.join(problems)}") from None
