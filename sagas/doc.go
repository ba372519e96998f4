// Package sagas is a saga (process manager) runtime for Watermill's CQRS
// component, with its state on Redis, whose every step is a hook operation
// and so a span, a metric and a history record that points at that span.
//
// A saga reacts to events by sending commands: an order saga reserves stock
// when an order is placed, charges the payment once the stock is reserved,
// ships when paid, and releases the stock when the payment does not come in
// time. The runtime keeps each instance's state, makes every step atomic
// (state, commands to send, processed event IDs, timeouts and the history
// record in one write), runs each instance's steps one at a time across
// processes, and finishes what a crashed process left.
//
// # Defining a saga
//
// A [Definition] reads like a state machine: the events that start an
// instance ([StartOn]) and the ones that continue it ([On]), each with the
// function that finds the instance key in the event, and one step function
// from (state, event or fired timeout) to a [Result]: the new state and its
// name, the commands to send, the timeouts to schedule or cancel, and
// whether the saga ended.
//
//	var orderSaga = sagas.Definition[Order]{
//		Type: "OrderSaga",
//		Events: []sagas.EventBinding{
//			sagas.StartOn(func(e *OrderPlaced) string { return e.OrderID }),
//			sagas.On(func(e *StockReserved) string { return e.OrderID }),
//			sagas.On(func(e *PaymentCharged) string { return e.OrderID }),
//		},
//		Step: func(ctx context.Context, o Order, in sagas.Input) (sagas.Result[Order], error) {
//			if in.Timeout != nil { // "payment" fired
//				return sagas.Result[Order]{State: o, Status: "stock_released",
//					Commands: []any{&ReleaseStock{OrderID: o.ID}}, End: sagas.OutcomeCompensated}, nil
//			}
//			switch e := in.Event.(type) {
//			case *OrderPlaced:
//				return sagas.Result[Order]{State: Order{ID: e.OrderID}, Status: "reserving_stock",
//					Commands: []any{&ReserveStock{OrderID: e.OrderID}}}, nil
//			case *StockReserved:
//				return sagas.Result[Order]{State: o, Status: "awaiting_payment",
//					Commands: []any{&ChargePayment{OrderID: o.ID}},
//					Schedule: []sagas.ScheduleTimeout{{Name: "payment", After: 15 * time.Minute}}}, nil
//			case *PaymentCharged:
//				return sagas.Result[Order]{State: o, Status: "paid", Cancel: []string{"payment"},
//					End: sagas.OutcomeCompleted}, nil
//			}
//			return sagas.Result[Order]{}, fmt.Errorf("unexpected %s", in.EventType)
//		},
//	}
//
// The step must not send anything itself: what it returns is saved first
// and sent afterwards, which is what makes a crash harmless. The state is
// encoded with [JSONCodec] unless the definition has a [Codec].
//
// # Wiring
//
// [NewManager] takes a [Store] ([RedisStore] in production, [MemoryStore]
// in tests), the publisher and the marshaler of the command bus.
// [Register] adds a definition; [Manager.AddTo] adds one handlers group per
// saga type to a cqrs.EventGroupProcessor, named after the saga type.
// Watermill v1.5.1 hands that name to the subscriber constructor as
// EventGroupProcessorSubscriberConstructorParams.EventGroupName, so a
// watermill-redisstream subscriber whose consumer group is that name makes
// every process running the saga share its events, each event going to one
// of them:
//
//	proc, err := cqrs.NewEventGroupProcessorWithConfig(router, cqrs.EventGroupProcessorConfig{
//		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
//			return "events", nil // the one topic all the saga's events are published to
//		},
//		SubscriberConstructor: func(p cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
//			return redisstream.NewSubscriber(redisstream.SubscriberConfig{
//				Client:        rdb,
//				ConsumerGroup: p.EventGroupName, // "OrderSaga"
//			}, logger)
//		},
//		AckOnUnknownEvent: true, // other events share the topic
//		Marshaler:         marshaler,
//	})
//	...
//	err = manager.AddTo(proc)
//	go manager.RunRecovery(ctx)
//
// A handlers group subscribes to one topic (GenerateSubscribeTopic is
// called once per group), so all the events of a saga type must be
// published to one topic: an event bus whose GeneratePublishTopic returns
// "events" for every event does it. AckOnUnknownEvent must be true, for the
// group also receives the events no handler of it wants. Where events are
// published to a topic per type, forward the saga's events to one topic
// (a router handler that republishes them) before the saga consumes them.
//
// Consume through a router instrumented with watermillobs and processors
// configured by cqrsbus, and publish commands through a
// watermillobs.Publisher: then the process span of the event is the parent
// of the step's spans, and each command's send span their child.
//
// # What a step does
//
// For each event the handler reads the consumed message
// (cqrs.OriginalMessageFromCtx) for its UUID and correlation ID, then:
//
//  1. takes the instance lock (random token, LockTTL, waiting at most
//     LockWait with jittered backoff);
//  2. loads the instance; acknowledges without a step an event already
//     applied (its UUID is among the ProcessedLimit newest), an On event
//     for an instance that does not exist ([Manager.UnroutedEvents]) and an
//     event for an ended instance;
//  3. runs the step, then, as the operation saga.run.{SagaType}: stamps the
//     commands as complete messages (marshaled, a UUID derived from saga
//     type, instance, version and index, the correlation ID, the event's
//     UUID as causation ID, message_kind "command", the trace context of the
//     saga.run span); saves state, commands, processed ID, timeouts and the
//     [StepRecord] with a version check; publishes the commands and marks
//     them sent;
//  4. releases the lock (only if its token still holds it).
//
// A version conflict ([ErrConflict]: the lock expired and another process
// saved) reloads and retries, at most MaxConflictRetries times. A publish
// that fails after the save is not an error: the commands stay pending and
// recovery publishes them, verbatim.
//
// # Failures
//
// Transient failures (the lock held by a live process past LockWait, version
// conflicts past the bound, the store unreachable) nack the event, so it is
// redelivered; they never fail the saga. watermill-redisstream resends a
// nacked message at once, in the same process (its NackResendSleep is a
// fixed pause), and handles one entry at a time per subscriber: the manager
// therefore sleeps a jittered backoff before it nacks (RetryBackoff doubling
// per attempt of the event up to MaxRetryBackoff). A NackResendSleep on the
// subscriber adds to it.
//
// Poison failures ([ErrPoison]: the state does not decode, the step panics
// or returns an error, a command does not marshal) are saved as a step
// record with outcome "error", the error and the failure count, the state
// unchanged, and nack the event; the MaxFailures-th marks the instance
// [OutcomeFailed] and acknowledges the event, so that one poison instance
// never blocks the others. Every failure is logged with saga.type, saga.id,
// event.type, event.id, error and attempt, and is in [Manager.History].
//
// # Timeouts
//
// A scheduled timeout is kept with the instance, indexed by due time, and
// delivered by recovery as a step whose [Input] has Timeout set; the step
// removes it in its save. A timeout whose instance ended, or which was
// cancelled or delivered meanwhile, is dropped: logged, counted
// ([Manager.DroppedTimeouts]) and notified as saga.timeout.dropped. An
// instance that ends drops its remaining timeouts.
//
// The timeout step continues the trace of the step that scheduled it (its
// trace context is saved with the timeout), or, with LinkTimeouts or when
// the timeout was scheduled longer ago than TimeoutLinkAfter, starts a new
// trace linked to it, so that a trace is not stretched over hours.
//
// # Recovery
//
// [Manager.RecoverOnce] (looped by [Manager.RunRecovery]) publishes the
// pending commands of instances that have them and delivers the due
// timeouts, each under the instance's lock. Run it in every process: passes
// at once in several processes are safe, an instance locked by a live
// process is left to it, and the lock of a dead one expires after LockTTL.
// A command published twice (a lock that expired during a slow publish)
// has the same UUID both times, for consumers to deduplicate.
//
// # Hook operations
//
// Spans, metrics and logs come from hooks registered for these operations
// (watermillobs.NewSpanHook turns them into spans); the registry is
// Config.Registry, else the one in the handler's context.
//
//	saga.handle_event.{EventType}  event.type, event.id, saga.type, correlation_id
//	saga.run.{SagaType}            saga.type, saga.id, saga.step, saga.state_version,
//	                               saga.from_state, saga.to_state, saga.outcome
//	                               (running, completed, compensated, failed, timed_out, error),
//	                               saga.trigger (event, timeout), event.type,
//	                               saga.version_conflicts, saga.lock_wait, correlation_id
//	redis.lock.acquire.saga        resource (SagaType:ID), resource_type, timeout, ttl
//	redis.lock.release.saga        resource, resource_type
//	saga.recovery.run_once         (one pass)
//	saga.recovery.pending          saga.type, saga.id, messaging.batch.message_count
//	saga.recovery.timeouts         saga.type, saga.id, saga.timeout
//
// Notifications (hooks.Notify): saga.version_conflict (saga.type, saga.id)
// per conflict, saga.timeout.dropped (saga.type, saga.id, saga.timeout).
// A step record's TraceID and SpanID are those of its saga.run span. The
// span hook turns the time.Duration attributes (saga.lock_wait, timeout,
// ttl) into milliseconds under keys ending in "_ms".
//
// # Errors
//
// [ErrUnknownSagaType] (History of a type never registered),
// [ErrLockNotAcquired], [ErrConflict], [ErrPoison] with [ErrUndecodableState]
// or [ErrStepPanicked], each wrapped with the saga type and ID; test them
// with errors.Is.
//
// # Redis Cluster
//
// [RedisStore] keeps all keys of an instance and its index entries under
// one hash tag, so that every step is one atomic script on one node; the
// key prefix is configurable, so that several applications share a Redis.
package sagas
