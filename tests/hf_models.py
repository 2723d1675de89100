"""Tiny real causal LMs for the tests of extract and speculate, built here and saved with
`save_pretrained`: 2-layer Llama-style models with a byte-level BPE tokenizer and 2-layer
GPT-2-style ones with a WordPiece tokenizer, all trained on CORPUS with `tokenizers`. Nothing is
downloaded. Importing this module needs transformers and tokenizers (callers importorskip them)."""

from pathlib import Path

import torch
import transformers

CORPUS = ["the quick brown fox jumps over the lazy dog", "adapters align hidden states",
          "speculative decoding drafts tokens", "hello world, this is a test"] * 20
# Words neither tokenizer saw whole: the two split them differently, so some positions do not align.
NOVEL = ["the xylophone quietly jumps over hidden zebras", "an unaligned ecosystem of tokenizers",
         "hello pneumatic world, this is a quokka test", "speculative draftsmanship jumps"]


def tokenizer(kind: str, vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", pad_token="<pad>")


def save(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_models(root: Path) -> dict[str, Path]:
    """llama (BPE), llama2 (the same tokenizer, other weights), gpt2 (WordPiece), wide (GPT-2,
    WordPiece, hidden 48), llama_wide (BPE like llama, hidden 48)."""
    torch.manual_seed(0)
    bpe, wordpiece = tokenizer("bpe", 300), tokenizer("wordpiece", 200)

    def llama(seed: int, width: int = 32):
        torch.manual_seed(seed)
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=len(bpe), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=128))

    def gpt2(width: int):
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(wordpiece), n_embd=width,
                                                                    n_layer=2, n_head=4, n_positions=128,
                                                                    bos_token_id=1, eos_token_id=2))

    return {"llama": save(llama(0), bpe, root / "llama"), "llama2": save(llama(1), bpe, root / "llama2"),
            "gpt2": save(gpt2(32), wordpiece, root / "gpt2"), "wide": save(gpt2(48), wordpiece, root / "wide"),
            "llama_wide": save(llama(2, 48), bpe, root / "llama_wide")}
