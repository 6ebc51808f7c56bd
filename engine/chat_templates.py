"""Chat templates for checkpoints that ship without one (the tokenizer's own template always wins)."""

# Ling-2.0 / AntAngelMed (llama.cpp calls it `bailing2`): the system turn is always present and ends with the
# thinking switch; no separators between turns; the generation prompt has no trailing newline.
LING = (
    "{%- set system = messages[0].content if messages and messages[0].role == 'system' else none -%}"
    "<role>SYSTEM</role>{%- if system is not none -%}{{ system ~ '\\n' }}{%- endif -%}detailed thinking off<|role_end|>"
    "{%- for message in messages -%}"
    "{%- if loop.first and message.role == 'system' -%}"
    "{%- elif message.role == 'system' -%}<role>SYSTEM</role>{{ message.content }}<|role_end|>"
    "{%- elif message.role == 'user' -%}<role>HUMAN</role>{{ message.content }}<|role_end|>"
    "{%- elif message.role == 'assistant' -%}<role>ASSISTANT</role>{{ message.content }}<|role_end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<role>ASSISTANT</role>{%- endif -%}"
)

DEFAULT_TEMPLATES = {"bailing_moe_v2": LING}
