"""The mv4all model: frozen audio encoder -> projector -> causal LM, plus its batch collator.

Other backbones (a transformers audio LLM such as Qwen2-Audio) are registered in ``backbones`` and
handled by ``audio_lm``; ``load_run`` loads a run of any of them.

Importing this package registers ``mv4all`` with ``AutoConfig``, ``AutoModel`` and
``AutoModelForCausalLM``, so saved checkpoints also load through the Auto classes.
Needs the ``train`` extra (transformers, peft, trl).
"""

from .backbones import BACKBONES, get_backbone, register_backbone
from .collator import IGNORE_INDEX, MV4AllCollator, add_audio_token
from .configuration import ImageBindAudioConfig, MV4AllConfig
from .encoders import (
    AUDIO_ENCODERS,
    ASTAudioEncoder,
    ClapAudioEncoder,
    EncoderSpec,
    FrozenAudioEncoder,
    ImageBindAudioEncoder,
    WhisperAudioEncoder,
    audio_encoder_spec,
    build_audio_encoder,
    load_audio_encoder,
    register_audio_encoder,
)
from .modeling import (
    MV4AllForConditionalGeneration,
    MV4AllModel,
    MV4AllPreTrainedModel,
    pool_clip_embeddings,
)
from .processing import AudioWindow, MV4AllProcessor, window_audio
from .projector import AudioProjector
from .run import load_run

LORA_TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


def lora_config(r: int = 32, alpha: int = 32, dropout: float = 0.1, **kwargs):
    """The paper's stage-2 LoRA (DeepResonance recipe: r=32, alpha=32, dropout 0.1 on q/k/v/o).

    The target regex keeps LoRA out of the audio encoder; ``modules_to_save=["projector"]``
    stores the trained projector inside the adapter, so adapter + base reproduce the model.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=kwargs.pop("target_modules", LORA_TARGET_MODULES),
        modules_to_save=kwargs.pop("modules_to_save", ["projector"]),
        task_type="CAUSAL_LM",
        **kwargs,
    )


__all__ = [
    "AUDIO_ENCODERS",
    "ASTAudioEncoder",
    "BACKBONES",
    "AudioProjector",
    "AudioWindow",
    "ClapAudioEncoder",
    "EncoderSpec",
    "FrozenAudioEncoder",
    "IGNORE_INDEX",
    "ImageBindAudioConfig",
    "ImageBindAudioEncoder",
    "LORA_TARGET_MODULES",
    "MV4AllCollator",
    "MV4AllConfig",
    "MV4AllForConditionalGeneration",
    "MV4AllModel",
    "MV4AllPreTrainedModel",
    "MV4AllProcessor",
    "WhisperAudioEncoder",
    "add_audio_token",
    "audio_encoder_spec",
    "build_audio_encoder",
    "get_backbone",
    "load_audio_encoder",
    "load_run",
    "lora_config",
    "pool_clip_embeddings",
    "register_audio_encoder",
    "register_backbone",
    "window_audio",
]
