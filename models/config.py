"""The one configuration's schema: params.yaml's sections, validated by pydantic (read by models.params)."""
from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class ConfigError(ValueError):
    """A bad configuration; its message is one line naming the file, key and reason."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(Strict):
    seed: int = 0
    val: float = Field(0.2, gt=0, lt=1, description="share of each class in the validation split")
    test: float = Field(0.2, gt=0, lt=1, description="share of each class in the test split")

    @model_validator(mode="after")
    def _leaves_train(self) -> SplitConfig:
        if self.val + self.test >= 1:
            raise ValueError("val + test must leave images for train (sum < 1)")
        return self


class LongTailConfig(Strict):
    imbalance_ratio: float | None = Field(
        None, ge=1, description="subsample train so the largest class has this many times the smallest"
    )
    seed: int = 0
    generator_sees_unused: bool = Field(
        True, description="the embedded generator also trains on the train images the subsampling leaves out, "
        "standing in for a generator pretrained on broad data that knows every class; classifiers never see them")


class DatasetConfig(Strict):
    name: str = Field("digits", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: Path = Path("data/digits")
    embedded: bool = Field(True, description="export the embedded dataset when `path` is missing: scikit-learn's "
                           "digits at data/digits, the drawn scenes at data/scenes")
    image_size: int = Field(32, ge=8, description="side the classifier sees, in pixels")
    min_image_size: int = Field(8, ge=1, description="images smaller on either side are skipped")
    min_class_images: int = Field(3, ge=3, description="classes with fewer usable images are left out")
    max_pixels: int = Field(4096 * 4096, ge=64, description="larger images are skipped (and reported) unread")
    split: SplitConfig = SplitConfig()
    long_tail: LongTailConfig = LongTailConfig()


class AugmentConfig(Strict):
    scale: tuple[float, float] = (0.7, 1.0)
    hflip: float = Field(0.0, ge=0, le=1)
    color_jitter: float = Field(0.0, ge=0)
    mixup: float = Field(0.0, ge=0, description="MixUp alpha; 0 switches it off")
    cutmix: float = Field(0.0, ge=0, description="CutMix alpha; 0 switches it off")
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class ClassifierConfig(Strict):
    model: str = Field("resnet10t", description="any timm model name")
    pretrained: bool = Field(False, description="load timm's pretrained weights when available")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    patience: int = Field(8, ge=1, description="stop after this many epochs without a better val accuracy")
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                        description="where training runs; auto: CUDA when present, else the CPU")
    workers: int | None = Field(
        None, ge=0, description="DataLoader worker processes; empty: 0 on the CPU (augmentation then draws from "
        "the seeded generator in-process: the same bytes as ever), min(8, cores) on CUDA")


class EvaluateConfig(Strict):
    many_shot: int = Field(100, ge=1, description="classes with more train images than this are 'many'")
    few_shot: int = Field(20, ge=1, description="classes with fewer train images than this are 'few'")

    @model_validator(mode="after")
    def _ordered(self) -> EvaluateConfig:
        if self.few_shot > self.many_shot:
            raise ValueError("few_shot must not exceed many_shot")
        return self


class EmbeddedLdmConfig(Strict):
    """Budget of the embedded diffusion model, in optimizer steps (reproducible, unlike seconds)."""

    vae_steps: int = Field(150, ge=1)
    unet_steps: int = Field(1000, ge=1)
    batch_size: int = Field(48, ge=2, description="the UNet's batch (the VAE's is 32)")
    lr: float = Field(2e-3, gt=0)
    empty_prompt: float = Field(0.1, ge=0, lt=1, description="share of empty prompts, for classifier-free guidance")
    min_snr_gamma: float | None = Field(
        5.0, gt=0, description="weight each UNet step's loss by min(SNR, gamma) / SNR (Min-SNR weighting): less "
        "of the gradient on faint noise, where the prompt hardly matters; the prompt is learnt in half the steps "
        "(docs/nightly_cost.md); empty: equal weights")
    seed: int = 0


# a class folder's name, however YAML or --set typed it (`7` reads as a number)
ClassName = Annotated[str, BeforeValidator(lambda value: str(value) if isinstance(value, int) else value)]


class AdapterConfig(Strict):
    """How a class is taught to a generator that does not know it, from that class's train images alone."""

    classes: Literal["all", "new"] | list[ClassName] = Field(
        "new", description="which classes get an adapter: all, new (those the base generator was not trained on), "
        "or a list of class folders")
    steps: int = Field(400, ge=1, description="optimizer steps per adapter")
    lr: float = Field(3e-3, gt=0, description="learning rate of the class token and the LoRA weights")
    rank: int = Field(8, ge=1, description="LoRA: rank of the low-rank weights")
    batch_size: int = Field(16, ge=1)
    min_images: int = Field(5, ge=1, description="fewer train images than this: no adapter, the plain prompt")
    seed: int = 0


class RetrainConfig(Strict):
    """When a night retrains the embedded generator rather than reusing the registered `current` one
    (a changed class set, prompt or budget always retrains; so does `genie train-generator --force`)."""

    max_growth: float = Field(0.2, ge=0, description="retrain when the train split grew or shrank by more than this share")
    max_age_days: float | None = Field(30, gt=0, description="retrain when the generator is older; empty: never")


class GeneratorConfig(Strict):
    model: str | None = Field(
        None, description="diffusers pipeline folder or hub id; empty: the embedded model of `genie train-generator`"
    )
    prompt: str = Field("a photo of a {name}.", description="prompt template; {name} is the class display name")
    class_names: dict[str, str] = Field(default_factory=dict, description="class folder -> display name")
    steps: int = Field(25, ge=1, description="sampler steps for a full denoise; an edit at r runs about r * steps")
    guidance: float = Field(7.5, ge=1, description="classifier-free guidance scale")
    batch_size: int = Field(32, ge=1, description="edits per UNet call")
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    dtype: str = Field("auto", pattern=r"^(auto|float32|float16|bfloat16)$")
    allow_pickle: bool = Field(False, description="also load pickled (.bin) diffusers weights; they can run code")
    compile: bool = Field(False, description="torch.compile the UNet: a one-off compile, then faster steps (GPU)")
    embedded: EmbeddedLdmConfig = EmbeddedLdmConfig()
    retrain: RetrainConfig = RetrainConfig()
    adapt: Literal["none", "textual-inversion", "lora"] = Field(
        "lora", description="teach classes to the generator: textual-inversion learns a token per class, lora "
        "learns low-rank UNet weights with it; a night then adapts a new class instead of retraining (docs/adapters.md)")
    adapter: AdapterConfig = AdapterConfig()

    @model_validator(mode="after")
    def _template(self) -> GeneratorConfig:
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(self.prompt) if field is not None}
        except ValueError as err:
            raise ValueError(f"prompt {self.prompt!r}: {err}") from None
        if fields != {"name"}:
            unknown = sorted(fields - {"name"})
            raise ValueError(f"prompt {self.prompt!r}: unknown placeholder {{{unknown[0]}}}; only {{name}} is filled"
                             if unknown else "prompt must contain {name}")
        return self


class GenieConfig(Strict):
    noise_ratio: float = Field(0.8, gt=0, le=1, description="r of the `genie` method")
    ada_ratios: tuple[float, ...] = Field((0.5, 0.6, 0.7, 0.8, 0.9), min_length=2, description="GeNIe-Ada candidates")
    img2img_ratios: tuple[float, ...] = Field((0.3, 0.7), min_length=1)
    ada_mode: str = Field(
        "fast", description="GeNIe-Ada: fast picks r* from short probes of every candidate and denoises only r* "
        "(1.8x GeNIe's UNet evaluations); exact denoises every candidate in full (4.3x). `genie benchmark ada` "
        "measures both on the trade-off Ada is for (docs/ada.md)")
    ada_probe_steps: int = Field(4, ge=1, description="fast Ada: sampler steps of each candidate's probe")

    @model_validator(mode="after")
    def _ratios(self) -> GenieConfig:
        for r in (*self.ada_ratios, *self.img2img_ratios):
            if not 0 < r <= 1:
                raise ValueError(f"noise ratio {r} outside (0, 1]")
        if list(self.ada_ratios) != sorted(set(self.ada_ratios)):
            raise ValueError("ada_ratios must be distinct and increasing")
        return self


class SelectConfig(Strict):
    """Which hard negatives the nightly run makes, from the champion's confusion on val."""

    targets: Literal["all", "weakest", "tail"] = Field("all", description="all, the n weakest by recall, or tail classes")
    n_weakest: int = Field(3, ge=1)
    k_confused: int = Field(2, ge=1, description="source classes per target: the k it is most confused with")
    per_target: int = Field(20, ge=1, description="hard negatives per target class")
    method: str = Field("genie-ada", description="a generation method (models.methods)")
    shard_size: int = Field(64, ge=1, description="edits per generation task")
    by_context: bool = Field(False, description="where the data records contexts: each target's sources come first "
                             "from the contexts where the champion recognises that target least on val")
    seed: int = 0


class RunnerConfig(Strict):
    """Where generation shards run: in-process, or on a Dask cluster (prefect-dask)."""

    kind: Literal["default", "dask"] = "default"
    dask_address: str | None = Field(None, description="scheduler address of an existing cluster; empty: a local one")
    dask_workers: int = Field(2, ge=1, description="workers of the local cluster")


class FinetuneConfig(Strict):
    epochs: int = Field(10, ge=1)
    lr: float = Field(5e-4, gt=0)
    patience: int = Field(5, ge=1)
    soft_label: float = Field(0.0, ge=0, lt=1, description="share of the source class in a generated image's "
                              "label (Diff-Mix style); 0 labels it as its target only")


class PromoteConfig(Strict):
    """The gates a challenger passes to become the champion (models/promotion.py); each verdict is logged."""

    min_improvement: float = Field(0.0, ge=0, description="overall accuracy gain the challenger must exceed")
    few_shot_tolerance: float = Field(0.01, ge=0, description="largest allowed drop on the few-shot group")
    max_class_drop: float | None = Field(0.1, ge=0, description="largest drop any one class may take; empty: no limit")
    worst_group_tolerance: float | None = Field(
        0.0, ge=0, description="largest drop of the worst group (datasets with contexts); empty: not a gate")
    new_classes: Literal["wait", "promote"] = Field(
        "wait", description="a challenger that knows classes the champion does not (it cannot be compared): wait for "
        "a person (`genie promote N`, named in the decision and the alert), or promote it")


class NotifyConfig(Strict):
    """Where a night's outcome is sent (flows/notify.py); URLs that carry a token belong in GENIE_NOTIFY_URLS."""

    urls: list[str] = Field(default_factory=list, description="Apprise URLs: slack://..., mailto://..., json://host/path")
    events: list[Literal["failed", "promoted", "refused", "waiting", "rollback", "crashed", "late", "gc-failed"]] = Field(
        ["failed", "promoted", "refused", "waiting", "rollback", "crashed", "late", "gc-failed"],
        description="the events to send; "
        "crashed and late are sent by the Prefect server's automations, which `genie deploy` makes")
    late_minutes: float = Field(60, gt=0, description="a scheduled night not started this long after its time is late")


class FewShotBenchmarkConfig(Strict):
    """N-way K-shot episodes on novel classes, a frozen extractor trained on the base classes only."""

    base_classes: tuple[str, ...] | None = Field(None, description="the extractor's classes; empty: the first half")
    novel_classes: tuple[str, ...] | None = Field(None, description="episode classes; empty: the classes not in base")
    ways: int = Field(5, ge=2)
    shots: tuple[int, ...] = Field((1, 5), min_length=1)
    episodes: int = Field(100, ge=1)
    queries: int = Field(15, ge=1, description="query images per class and episode")
    seed: int = 0
    methods: tuple[str, ...] | None = Field(
        None, description="none (the support images only), traditional (augmented views), any generation method, "
        "genie-ada-fast (GeNIe-Ada chosen from probes); empty: all of them (filled in as params.yaml is read)")


class LongTailBenchmarkConfig(Strict):
    """Fine-tuning on a long-tailed train split with confusion-driven hard negatives vs the baselines."""

    imbalance_ratio: float = Field(50, ge=1)
    per_target: int = Field(40, ge=1, description="generated images per tail class, the same for every method")
    sweep: bool = Field(False, description="GeNIe at every GeNIe-Ada candidate r, not only genie.noise_ratio")
    methods: tuple[str, ...] | None = Field(
        None, description="real (no generated images), any generation method, <method>+filter (its images the "
        "real-data judge calls the label); empty: all of them and genie-ada+filter (filled in as params.yaml is read)")


class AdaBenchmarkConfig(Strict):
    """GeNIe-Ada fast against exact on held-out (test-split) sources, each with a seeded target."""

    pairs: int = Field(500, ge=1, description="held-out (source, target) pairs: each test image with a "
                       "seeded target, then with a second one, and so on")
    seed: int = 0


class AdaptBenchmarkConfig(Strict):
    """One class held out of the embedded generator, then taught back to it by each adapter kind."""

    held_out: ClassName = Field("7", description="the class the base generator never sees")
    kinds: tuple[Literal["textual-inversion", "lora"], ...] = Field(("textual-inversion", "lora"), min_length=1)
    samples: int = Field(40, ge=1, description="text-to-image samples per class")
    pairs: int = Field(45, ge=1, description="GeNIe edits towards the held-out class (and as many towards the "
                       "others), sources from the other classes' test images")
    ratio: float = Field(0.8, gt=0, le=1, description="the edits' noise ratio")


class BenchmarkConfig(Strict):
    generator_seeds: tuple[int, ...] = Field(
        (0, 1, 2), min_length=1, description="independent replicates: each seed trains its own embedded generator "
        "(on the whole train split), few-shot extractor and judge, and draws its own long-tailed subsample and "
        "classifiers; verdicts rest on the interval across seeds")
    few_shot: FewShotBenchmarkConfig = FewShotBenchmarkConfig()
    long_tail: LongTailBenchmarkConfig = LongTailBenchmarkConfig()
    ada: AdaBenchmarkConfig = AdaBenchmarkConfig()
    adapt: AdaptBenchmarkConfig = AdaptBenchmarkConfig()
    filter_threshold: float = Field(0.5, ge=0, lt=1, description="label-consistency filter: keep an edit when the "
                                    "real-data judge gives its target at least this probability")
    shard_size: int = Field(256, ge=1, description="edits per cached generation task")


class ScheduleConfig(Strict):
    cron: str = "0 2 * * *"
    timezone: str = "UTC"


class DvcRemoteConfig(Strict):
    name: str = Field("team", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    url: str | None = Field(None, description="any DVC remote URL (a shared folder, s3://..., ssh://...) each night "
                            "pushes the data and the generated images it used to; empty: nothing is pushed")


class DvcConfig(Strict):
    remote: DvcRemoteConfig = DvcRemoteConfig()


class PathsConfig(Strict):
    artifacts: Path = Path("artifacts")


class RuntimeConfig(Strict):
    """How this machine runs torch: the same commit, configuration, seed and thread count give the same bytes."""

    threads: int | None = Field(2, ge=1, description="torch's CPU threads (float sums are split per thread, so the "
                                "count decides the last bits); OMP_NUM_THREADS wins when set; empty: torch's default")
    deterministic: bool = Field(True, description="torch's deterministic kernels where it has them (a warning "
                                "names any op that has none)")


class RetentionConfig(Strict):
    """What `genie gc` keeps (tasks/retention.py); it never deletes what a kept version records."""

    keep_nights: int = Field(10, ge=1, description="the versions and images of the last N nights that reached "
                             "evaluate are kept, with every version that has an alias, the challenger waiting for a "
                             "person and whatever a kept version names, whatever their age")
    generated_days: float = Field(7, ge=0, description="generated images no kept night used go once older than this")
    grace_hours: float = Field(24, ge=0, description="a DVC object younger than this is never collected (a night "
                               "elsewhere may have pushed it a moment ago)")
    after_night: bool = Field(False, description="run `genie gc` at the end of each night")


class Settings(Strict):
    dataset: DatasetConfig = DatasetConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    generator: GeneratorConfig = GeneratorConfig()
    genie: GenieConfig = GenieConfig()
    select: SelectConfig = SelectConfig()
    runner: RunnerConfig = RunnerConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    promote: PromoteConfig = PromoteConfig()
    notify: NotifyConfig = NotifyConfig()
    retention: RetentionConfig = RetentionConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    dvc: DvcConfig = DvcConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    paths: PathsConfig = PathsConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _soft_labels_without_mixing(self) -> Settings:
        if self.finetune.soft_label > 0 and (self.classifier.augment.mixup > 0 or self.classifier.augment.cutmix > 0):
            raise ValueError("finetune.soft_label cannot be combined with classifier.augment.mixup / cutmix")
        return self

    @property
    def generator_model(self) -> str:
        return self.generator.model or (self.workdir / "generator").as_posix()

    def display_name(self, label: str) -> str:
        """The class's name in prompts: configured, else the digit's word, else the folder name."""
        if label in self.generator.class_names:
            return self.generator.class_names[label]
        if self.dataset.embedded and label.isdigit() and len(label) == 1:
            return DIGIT_NAMES[int(label)]
        return label.replace("_", " ")

    def prompt(self, label: str) -> str:
        return self.generator.prompt.format(name=self.display_name(label))

    def prompts(self, classes: list[str]) -> dict[str, str]:
        """Each class's prompt, as the generator's tasks take them."""
        return {label: self.prompt(label) for label in classes}

    @property
    def registered_model(self) -> str:
        return f"{self.dataset.name}-classifier"

    @property
    def registered_generator(self) -> str:
        return f"{self.dataset.name}-generator"

    @property
    def registered_adapters(self) -> str:
        return f"{self.dataset.name}-adapters"

    @property
    def workdir(self) -> Path:
        """Where this dataset's artifacts go."""
        return self.paths.artifacts / self.dataset.name

    def flat(self) -> dict[str, Any]:
        """Dotted keys to plain values, as MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, sub in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, sub)
            else:
                out[prefix] = value

        walk("", self.model_dump(mode="json"))
        return out
