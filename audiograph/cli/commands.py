"""One function per command: open the store, call the pipeline, print what it did.

Library modules are imported inside each command so that `audiograph query` starts fast."""

from __future__ import annotations

import sys

from audiograph.cli.arguments import CSV_COLUMN_OPTIONS, TRAIN_AUDIO_OPTIONS, TRAIN_MUSIG_OPTIONS
from audiograph.cli.output import (
    check_m3u,
    hits_json,
    one_line,
    print_embed_summary,
    print_hits,
    print_json,
    report_failure,
    say,
    show,
    write_m3u,
)
from audiograph.errors import ConfigError
from audiograph.tables import counted


def open_store(args, must_exist: bool = True):
    """The store that --db (else $AUDIOGRAPH_DB, else ./audiograph.db) names; `must_exist`: refuse a missing one."""
    from audiograph.store import Store

    return Store(args.db, must_exist=must_exist)


def refuse_store_options(args, command: str) -> None:
    """`command` writes files, not a store, and prints no result: a --db or --json (given before the command's
    name, where every command's options are read) is a mistake, said so."""
    if args.db:
        raise ConfigError(f"{command} writes files, not a store: --db does not apply (got {args.db})")
    if args.json:
        raise ConfigError(f"{command} writes files and prints no result: --json does not apply")


def distributed_args(args) -> dict:
    """The Lightning options every training and MUSIG-embedding command passes on."""
    return {k: getattr(args, k) for k in ("accelerator", "devices", "strategy", "num_nodes")}


def cmd_synth(args) -> int:
    from audiograph.synth import synthesize

    refuse_store_options(args, "synth")
    result = synthesize(
        args.out_dir,
        tracks=args.tracks,
        genres=args.genres,
        playlists=args.playlists,
        seconds=args.seconds,
        seed=args.seed,
        with_faults=args.with_faults,
        progress=not args.quiet,
    )
    faults = f", {counted(len(result.faults), 'faulty file')}" if result.faults else ""
    say(
        f"wrote {counted(result.tracks, 'track')} and {counted(result.playlists, 'playlist')}{faults} to {result.out_dir}"
    )
    return 0


def cmd_embed_audio(args) -> int:
    from audiograph.pipelines.embed_audio import check_root, embed_audio

    check_root(args.dir)  # before the store is opened, so that a mistyped folder leaves no store behind
    store = open_store(args, must_exist=False)
    summary = embed_audio(
        args.dir,
        store,
        collection=args.collection,
        acoustic_model=args.acoustic_model,
        batch_size=args.batch_size,
        num_workers=args.workers,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        quiet=args.quiet or args.json,
        on_failure=report_failure,
        prune=args.prune,
        rehash=args.rehash,
    )
    if summary is None:  # a rank of a multi-device run other than the writing one: rank 0 reports
        return 0
    if args.json:
        print_json(summary.to_json())
        return 0
    print_embed_summary(summary, args.quiet)
    return 0


def cmd_query(args) -> int:
    from audiograph.pipelines.query import query_file

    if args.m3u:
        check_m3u(args.m3u)
    store = open_store(args)
    store.check(["tracks", "models"])  # and the vectors, when read: a damaged store is said, not searched
    result = query_file(store, args.file, space=args.space, k=args.k, model=args.model)
    if args.json:
        print_json(hits_json(result.hits))
    else:
        print_hits(result, wide=args.wide)
    # After the results, which a playlist that cannot be written (no hit has a file) does not take away.
    written = write_m3u(args.m3u, result.hits, store) if args.m3u else None
    if written and not args.json:
        say(written, args.quiet)
    return 0


def cmd_similar(args) -> int:
    from audiograph.pipelines.query import similar_track

    store = open_store(args)
    store.check(["tracks", "models"])
    result = similar_track(store, args.track, space=args.space, k=args.k)
    if args.json:
        print_json(hits_json(result.hits))
        return 0
    print_hits(result, wide=args.wide)
    return 0


def cmd_radio(args) -> int:
    from audiograph.pipelines.explore import radio
    from audiograph.pipelines.query import format_hits

    if args.m3u:
        check_m3u(args.m3u)
    store = open_store(args)
    store.check(["tracks", "models"])
    result = radio(store, args.seed, length=args.length, space=args.space, diversity=args.diversity, walk=args.walk)
    if args.json:
        print_json(hits_json(result.tracks))
    else:
        show(
            one_line(
                f"radio from {result.seed} in space '{result.space}' (model {result.model_id}); score: cosine to"
                " the seed"
            )
        )
        show(format_hits(result.tracks, extra=("genre",), wide=args.wide))
    for note in result.notes:  # as query's notes: after the table, or beside the JSON on stderr
        if args.json:
            print(f"note: {one_line(note)}", file=sys.stderr)
        else:
            show(f"note: {note}")
    written = write_m3u(args.m3u, result.tracks, store) if args.m3u else None  # after the results, as in query
    if written and not args.json:
        say(written)
    return 0


def cmd_map(args) -> int:
    from audiograph.pipelines.explore import map_space

    store = open_store(args)
    report = map_space(
        store, args.space, args.out, method=args.method, colour=args.colour, max_points=args.max_points, seed=args.seed
    )
    if args.json:
        print_json(report.__dict__)
        return 0
    say(
        f"mapped {report.points} '{report.space}' vectors of model {report.model_id} with {report.method}"
        f" to {report.out}"
    )
    return 0


def cmd_index(args) -> int:
    from audiograph.pipelines.index import build_index
    from audiograph.store.ann import TARGET_RECALL

    store = open_store(args)
    report = build_index(store, args.space, kind=args.kind)
    if args.json:
        print_json(report.__dict__)
        return 0
    params = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.params.items() if v is not None)
    say(
        f"indexed {report.rows} '{report.space}' vectors of model {report.model_id}: {report.kind}"
        f"{f' ({params})' if params else ''} in {report.folder}; query and similar use it while it is current"
    )
    recall = report.params.get("calibrated_recall_at_10")
    if recall is not None and recall < TARGET_RECALL:
        print(
            f"warning: its best setting finds {recall:.2f} of the exact top 10, below {TARGET_RECALL}: another --kind"
            " may do better, and `--kind flat` searches exactly",
            file=sys.stderr,
        )
    return 0


def cmd_export(args) -> int:
    from audiograph.pipelines.export import export_space

    store = open_store(args)
    report = export_space(store, args.space, args.out, format=args.format, model=args.model)
    if args.json:
        print_json(report.to_json())
        return 0
    what = f"{report.tracks} {report.dim}-d '{report.space}' vectors of model {report.model_id}"
    say(f"wrote {what} to {report.out} ({report.format})", args.quiet)
    return 0


def cmd_build_graph(args) -> int:
    from audiograph.pipelines.build_graph import build_graph, export_graphml

    store = open_store(args)
    csv_options = {k: getattr(args, k) for k in CSV_COLUMN_OPTIONS if getattr(args, k) is not None}
    report = build_graph(
        store,
        args.sources,
        min_weight=args.min_weight,
        add_missing=args.add_missing,
        max_playlist_length=args.max_playlist_length,
        **csv_options,
    )
    if args.graphml:
        export_graphml(store, args.graphml)
    if args.json:
        print_json(report.to_json())
        return 0
    from audiograph.tables import format_table

    s = report.summary
    rows = f" and {counted(report.edge_list_edges, 'edge-list row')}" if report.edge_list_edges else ""
    say(
        f"read {counted(report.playlists, 'playlist')} with {counted(report.entries, 'entry', 'entries')}{rows}:"
        f" {report.matched} matched stored tracks, {report.unmatched} did not"
        + (f", {counted(report.urls_skipped, 'URL')} skipped" if report.urls_skipped else "")
        + (
            f", {counted(report.duplicates_dropped, 'repeated entry', 'repeated entries')} dropped"
            if report.duplicates_dropped
            else ""
        )
        + (
            f", {counted(report.self_loops_dropped, 'edge')} of a track to itself dropped"
            if report.self_loops_dropped
            else ""
        )
        + (
            f", {counted(report.edge_rows_summed, 'repeated edge row')} added to their edge"
            if report.edge_rows_summed
            else ""
        )
    )
    for failure in report.failed:
        report_failure(failure["file"], failure["reason"])
    if report.playlists_joined:
        joined = report.playlists_joined
        say(
            f"  {counted(joined, 'playlist')} {'has' if joined == 1 else 'have'} an id read from an earlier source: joined to it"
        )
    for example in report.unmatched_examples:
        say(f"  unmatched: {example}")
    for line in report.malformed:
        say(f"  malformed: {line}")
    if report.added_tracks:
        say(f"added {counted(report.added_tracks, 'track')} without audio")
    if report.long_playlists:
        say(
            f"  {counted(report.long_playlists, 'playlist')} of more than {report.max_playlist_length} tracks"
            " stored but left out of the graph (it would link every pair of its tracks; --max-playlist-length"
            " changes the bound)"
        )
    dropped = report.edges_below_min_weight
    say(report.min_weight_reason + (f" ({counted(dropped, 'weaker pair')} dropped)" if dropped else ""))
    if report.replaced:
        r = report.replaced
        sources = ", ".join(r["sources"]) or "nothing"
        say(
            f"it replaces the stored graph of {counted(r['playlists'], 'playlist')} and {counted(r['edges'], 'edge')}, built {r['built']}"
            f" from {sources}"
        )
    say(
        f"graph: {counted(s['nodes'], 'node')}, {counted(s['edges'], 'edge')}, {counted(s['components'], 'connected component')}"
        f" (largest {s['largest_component']}), {counted(s['isolated_nodes'], 'isolated track')}"
    )
    say(format_table(["weight", "edges"], list(s["weight_histogram"].items()), right={1}))
    if args.graphml:
        say(f"wrote {args.graphml}")
    return 0


def cmd_train_audio(args) -> int:
    from audiograph.pipelines.train_audio import GUARD_K, train_audio

    store = open_store(args)
    options = {k: getattr(args, k) for k in TRAIN_AUDIO_OPTIONS}
    report = train_audio(
        store,
        space=args.space,
        max_epochs=args.max_epochs,
        patience=args.patience,
        num_workers=args.num_workers,
        quiet=args.quiet or args.json,
        **distributed_args(args),
        **options,
    )
    if report is None:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
    if args.json:
        print_json(report.__dict__)
        return 0
    say(report.guard_line())
    for warning in report.warnings:
        print(f"warning: {one_line(warning)}", file=sys.stderr)
    m = report.metrics
    say(
        f"trained {report.model_id} for {counted(report.epochs, 'epoch')} and kept epoch {int(m.get('epoch', 0)) + 1},"
        f" the best by validation precision@{GUARD_K} ({m.get(f'val_precision_at_{GUARD_K}', float('nan')):.3f});"
        f" its validation accuracy {m.get('val_accuracy', float('nan')):.3f}"
    )
    say(f"checkpoint {report.checkpoint}")
    say(f"re-embedded {counted(report.embedded, 'track')} into the {report.space} space from the log-mel cache")
    return 0


def cmd_import_tracks(args) -> int:
    from audiograph.pipelines.import_tracks import check_import_csv, import_tracks, parse_feature_groups

    columns = ("id_col", "genre_col", "popularity_col", "title_col", "artist_col", "playlist_col")
    options = {k: getattr(args, k) for k in columns}
    options["features"] = parse_feature_groups(args.features or [])
    # Before the store is opened, so that a mistyped file or column name leaves no store behind.
    check_import_csv(args.csv, **options)
    report = import_tracks(open_store(args, must_exist=False), args.csv, **options)
    if args.json:
        print_json(report.to_json())
        return 0
    groups = ", ".join(f"{g} ({counted(n, 'column')})" for g, n in report.feature_groups.items()) or "none"
    genres = f"; {counted(report.genres, 'genre')}" if args.genre_col else "; genres left as they were"
    updated = f" ({report.updated} of them stored already, updated)" if report.updated else ""
    say(
        f"imported {counted(report.tracks, 'track')}{updated} from {counted(report.rows, 'row')};"
        f" feature groups: {groups}{genres}",
        args.quiet,
    )
    for group, model in report.extended.items():
        say(f"  feature group '{group}': added to the existing space of model {model} (same columns)", args.quiet)
    for line in report.replaced:
        print(f"note: {one_line(line)}", file=sys.stderr)
    for line in report.skipped[:10]:
        say(f"  skipped: {line}", args.quiet)
    if len(report.skipped) > 10:
        say(f"  ... and {len(report.skipped) - 10} more skipped rows", args.quiet)
    for line in report.conflicting[:5]:
        say(f"  conflicting: {line}", args.quiet)
    if len(report.conflicting) > 5:
        say(f"  ... and {len(report.conflicting) - 5} more rows that repeat a track with other values", args.quiet)
    return 0


def cmd_train_musig(args) -> int:
    from audiograph.pipelines.train_musig import train_musig

    store = open_store(args)
    options = {k: getattr(args, k) for k in TRAIN_MUSIG_OPTIONS}
    report = train_musig(
        store,
        features=args.features,
        similarity=args.similarity,
        task_weights=args.task_weights,
        fanouts=tuple(args.fanouts),
        skip=not args.no_skip,
        space=args.space,
        max_epochs=args.max_epochs,
        patience=args.patience,
        batches_per_epoch=args.batches_per_epoch or None,
        num_workers=args.num_workers,
        quiet=args.quiet or args.json,
        **distributed_args(args),
        **options,
    )
    if report is None:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
    if args.json:
        print_json(report.__dict__)
        return 0
    m = report.metrics
    say(
        f"trained {report.model_id} on features {', '.join(report.features)} with task weights"
        f" {report.task_weights} ({'similarity task on ' + report.similarity_task if report.similarity_task else 'no similarity task'})"
    )
    if "val_hr" in m:
        graphsage = ""
        if "val_hr_graphsage" in m:  # `--task-weights auto` trained it beside the kept model
            graphsage = f" and {m['val_hr_graphsage']:.3f} for single-task GraphSAGE (the grid's 1,0,0)"
        say(
            f"best epoch {int(m.get('epoch', 0)) + 1}: playlist completion on held-out playlists, hit rate"
            f" {m['val_hr']:.3f} against {m.get('val_hr_features', float('nan')):.3f} for the z-scored input"
            f" features{graphsage}; {report.seeds_per_second:.0f} seeds/s"
        )
    else:
        say(
            f"best epoch {int(m.get('epoch', 0)) + 1}: held-out link AUC {m.get('val_auc', float('nan')):.3f}"
            f" against {m.get('val_auc_features', float('nan')):.3f} for the z-scored input features (too few"
            " playlists long enough to hold out for playlist completion);"
            f" {report.seeds_per_second:.0f} seeds/s"
        )
    for warning in report.warnings:
        print(f"warning: {one_line(warning)}", file=sys.stderr)
    say(f"checkpoint {report.checkpoint}")
    searched = ""
    if report.space == "musig" and report.imported_groups:
        searched = (
            "; `audiograph similar` now searches it by default (not `query FILE`: a new audio file lacks its"
            f" imported '{report.imported_groups[0]}' features)"
        )
    elif report.space == "musig":
        searched = "; `audiograph query` now searches it by default"
    say(f"wrote {counted(report.embedded, 'vector')} to the {report.space} space{searched}")
    return 0


def cmd_embed_musig(args) -> int:
    from audiograph.pipelines.train_musig import embed_musig, musig_model_row

    store = open_store(args)
    row = musig_model_row(store, args.model, args.space)
    before = store.vectors.spaces().get(row["space"], {})
    count = embed_musig(store, row["id"], **distributed_args(args))
    if count is None:  # a rank other than 0 of a distributed run: rank 0 writes and reports
        return 0
    replaced = {model: n for model, n in before.items() if model != row["id"]}
    if args.json:
        print_json({"embedded": count, "model_id": row["id"], "replaced": replaced})
        return 0
    say(f"wrote {counted(count, 'vector')} of model {row['id']} into the '{row['space']}' space", args.quiet)
    for model, n in replaced.items():
        say(
            f"they replace {counted(n, 'vector')} of model {model}: searches in '{row['space']}' now use {row['id']}",
            args.quiet,
        )
    return 0


def cmd_evaluate(args) -> int:
    from audiograph.eval.results import format_results, seeds_note
    from audiograph.pipelines.evaluate import evaluate, held_out_playlists

    store = open_store(args)
    held_out = None
    if args.playlists:
        held_out, unmatched = held_out_playlists(store, args.playlists)
        say(
            f"read {counted(len(held_out), 'held-out playlist')}; {counted(unmatched, 'entry', 'entries')} matched no stored track",
            args.quiet or args.json,
        )
    options = {k: getattr(args, k) for k in ("min_length", "seed_fraction", "holdout", "max_playlists")}
    musig_options = {k: getattr(args, k) for k in ("max_epochs", "batches_per_epoch") if getattr(args, k) is not None}
    evaluation = evaluate(
        store,
        methods=args.methods,
        held_out=held_out,
        seeds=tuple(range(args.seed, args.seed + args.repeats)),
        task_weights=args.task_weights,
        accelerator=args.accelerator,
        musig_options=musig_options,
        progress=None if args.quiet or args.json else say,
        **options,
    )
    if args.json:
        print_json(evaluation.to_json())
        return 0
    info = evaluation.info  # the results, which --quiet keeps: it silences only the progress lines
    show(
        f"\n{counted(info['eval_playlists'], 'evaluation playlist')} (at least {info['min_length']} tracks, first"
        f" {info['seed_fraction']:.0%} as seeds) and {counted(info['train_playlists'], 'training playlist')};"
        f" {seeds_note(evaluation)}"
    )
    show(format_results(evaluation))
    for note in evaluation.notes:
        show(f"note: {note}")
    return 0


def cmd_info(args) -> int:
    from audiograph.tables import format_table

    info = open_store(args).summary()
    if args.json:
        print_json(info)
        return 0
    counts, graph, spaces, serving, models = (info[k] for k in ("tracks", "graph", "spaces", "serving", "models"))
    show(f"store {info['store']}")
    show("tracks: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none"))
    if graph:
        sources = ", ".join(graph["sources"]) or "nothing"
        show(
            one_line(
                f"graph: {counted(graph['playlists'], 'playlist')}, {counted(graph['edges'], 'edge')}, built {graph['built']}"
                f" from {sources}"
            )
        )
    else:
        show("graph: none (run `audiograph build-graph`)")
    rows = [
        [space, sum(by_model.values()), serving[space], sum(n for m, n in by_model.items() if m != serving[space])]
        for space, by_model in spaces.items()
    ]
    show(format_table(["space", "vectors", "searched model", "older vectors"], rows, right={1, 3}))
    shown = [m for m in models if m["vectors"] or m["kind"] not in ("import", "descriptors")]
    rows = [[m["id"], m["kind"], m["space"], m["vectors"], "yes" if m["serves"] else "", m["created"]] for m in shown]
    show(format_table(["model", "kind", "space", "vectors", "searched", "created"], rows, right={3}))
    if len(shown) < len(models):
        show(f"({len(models) - len(shown)} import or descriptor models without vectors not shown; --json lists all)")
    return 0


def cmd_demo(args) -> int:
    from audiograph.pipelines.demo import run_demo

    refuse_store_options(args, "demo (it makes its own store in --out)")
    run_demo(args.out, quiet=args.quiet)
    return 0
