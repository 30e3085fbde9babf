"""A multi-sequence CO3D run as a user makes it: a tiny CO3D v1 folder written by
tools/make_co3d_dataset.py, then recon_runner with repro_multiseq_nerf_ad shrunk to CPU size.
The results are split by subset (seen / unseen sequences) and by number of source views."""
import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
D = "data_source_ReconDataSource_args"
PROVIDER = f"{D}.dataset_map_provider_JsonIndexDatasetMapProvider_args"
LOADER = f"{D}.data_loader_map_provider_SequenceDataLoaderMapProvider_args"
M = "model_factory_ReconModelFactory_args.model_GenericModel_args"
NERF = f"{M}.implicit_function_NeuralRadianceFieldImplicitFunction_args"


def test_multisequence_results_by_subset_and_source_views(tmp_path):
    root = tmp_path / "co3d"
    made = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "make_co3d_dataset.py"), "--out", str(root), "--version", "v1",
         "--n-sequences", "4", "--n-frames", "8"],
        capture_output=True, text=True, timeout=600,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    overrides = [
        "exp_dir=run",
        f"{PROVIDER}.dataset_root={root}",
        f"{PROVIDER}.category=procedural",
        f"{PROVIDER}.test_on_train=false",  # the repro config evaluates on train; score held-out data
        f"{PROVIDER}.dataset_JsonIndexDataset_args.image_height=24",
        f"{PROVIDER}.dataset_JsonIndexDataset_args.image_width=24",
        f"{LOADER}.batch_size=3",
        f"{LOADER}.images_per_seq_options=[2,3]",
        f"{LOADER}.dataset_length_train=4",
        f"{LOADER}.num_workers=0",
        f"{M}.render_image_width=16",
        f"{M}.render_image_height=16",
        f"{M}.chunk_size_grid=2048",
        f"{M}.raysampler_AdaptiveRaySampler_args.n_rays_per_image_sampled_from_mask=64",
        f"{M}.raysampler_AdaptiveRaySampler_args.n_pts_per_ray_training=8",
        f"{M}.raysampler_AdaptiveRaySampler_args.n_pts_per_ray_evaluation=8",
        f"{M}.renderer_MultiPassEmissionAbsorptionRenderer_args.n_pts_per_ray_fine_training=8",
        f"{M}.renderer_MultiPassEmissionAbsorptionRenderer_args.n_pts_per_ray_fine_evaluation=8",
        f"{M}.global_encoder_SequenceAutodecoder_args.autodecoder_args.n_instances=8",
        f"{M}.global_encoder_SequenceAutodecoder_args.autodecoder_args.encoding_dim=8",
        f"{NERF}.n_hidden_neurons_xyz=32",
        f"{NERF}.n_layers_xyz=2",
        f"{NERF}.append_xyz=[1]",
        "training_loop_ReconTrainingLoop_args.max_epochs=1",
        "training_loop_ReconTrainingLoop_args.test_when_finished=true",
    ]
    env = dict(os.environ, RECON_TRAINER_CACHE=str(tmp_path / "cache"))
    run = subprocess.run(
        [sys.executable, "-m", "recon_trainer.cli.runner", "--config-name", "repro_multiseq_nerf_ad", *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with open(tmp_path / "run" / "results_test.json") as f:
        results = json.load(f)
    entries = {(e["subset"], e["subsubset"]): e for e in results}
    assert ("train", "diff=all") in entries and ("test", "diff=all") in entries  # seen and unseen sequences
    by_n_src = [key for key in entries if key[1].startswith("n_src=")]
    assert {"n_src=1", "n_src=3", "n_src=5"} <= {key[1] for key in by_n_src}
    for subset in ("train", "test"):
        rows = entries[(subset, "diff=all")]["per_frame"]
        assert all(row["frame_type"].startswith(subset) for row in rows)
        assert sum(entries[key]["n_frames"] for key in by_n_src if key[0] == subset) <= len(rows)
    assert entries[("test", "diff=all")]["metrics"]["psnr_masked"] is not None
