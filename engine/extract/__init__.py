"""`adapter-engine extract`: the training data from two Hugging Face causal language models.

Both models read the same text; the drafter's and the verifier's hidden states at the positions
where both tokenizers end a token at the same character become one sample, in the dataset
format every other command reads. Modules:

    options   the contract, torch-free: the options, the files beside the dataset, its progress
    prompts   the prompt file (JSON lines of text or chat messages, or plain text)
    align     which token positions of the two tokenizers correspond (character offsets)
    output    the splits written chunk by chunk, the resume state, the finished index
    models    loading the models (transformers, an optional extra) and their hidden states
    run       the whole extraction, checked before the first byte is written
"""
